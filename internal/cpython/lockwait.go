package cpython

// lockWaitMethods are the C methods in which a thread waits for a
// Python-level lock with the GIL released: the module, its type's
// attribute name, and the methods (their PyMethodDef names).
var lockWaitMethods = []struct {
	module, typ string
	methods     []string
}{
	{"_thread", "LockType", []string{"acquire", "acquire_lock", "__enter__"}},
	{"_thread", "RLock", []string{"acquire", "__enter__"}},
	{"_queue", "SimpleQueue", []string{"get"}},
}

// LockWaitFuncs returns the addresses of the C functions that implement
// Python-level lock waits in interpreter in (threading.Lock and RLock
// acquire, SimpleQueue.get), read from the method tables of their types
// (PyTypeObject.tp_methods), so that it works on stripped builds too. The
// value is "module.Type.method". A module not imported yet has no entry.
func (py *Python) LockWaitFuncs(in *Interpreter) map[uint64]string {
	out := map[uint64]string{}
	L := py.L
	if L.TypeMethods < 0 || L.MethodDefMeth < 0 || L.MethodDefSize <= 0 {
		return out
	}
	mods, ok := py.Modules(in)
	if !ok {
		return out
	}
	for _, lw := range lockWaitMethods {
		mod, ok := mods.DictGet(lw.module)
		if !ok {
			continue
		}
		typ, ok := mod.Attr(lw.typ)
		if !ok || !typ.IsType() {
			continue
		}
		table, err := py.m.u64(typ.Addr + uint64(L.TypeMethods))
		if err != nil || table == 0 {
			continue
		}
		want := map[string]bool{}
		for _, m := range lw.methods {
			want[m] = true
		}
		for i := uint64(0); i < 128; i++ {
			def := table + i*uint64(L.MethodDefSize)
			namep, err := py.m.u64(def + uint64(L.MethodDefName))
			if err != nil || namep == 0 {
				break
			}
			name, err := py.m.cstring(namep, 64)
			if err != nil {
				break
			}
			if !want[name] {
				continue
			}
			if fn, err := py.m.u64(def + uint64(L.MethodDefMeth)); err == nil && fn != 0 && (out[fn] == "" || name == "acquire") {
				out[fn] = lw.module + "." + lw.typ + "." + name
			}
		}
	}
	return out
}
