package cpython

// ThreadsNamed returns the threads of every interpreter whose
// threading.Thread name is name (NativeID 0 where the version does not
// record it), read fresh from the target.
func (py *Python) ThreadsNamed(name string) ([]*Thread, error) {
	py.Reset()
	interps, err := py.Interpreters()
	if err != nil {
		return nil, err
	}
	var out []*Thread
	for _, in := range interps {
		names := py.threadNames(in.Addr)
		for _, t := range in.Threads {
			if n, ok := names[t.ThreadID]; ok && n == name {
				t.Name, t.HasName = n, true
				out = append(out, t)
			}
		}
	}
	return out, nil
}
