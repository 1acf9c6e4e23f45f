package core

import (
	"encoding/binary"
	"os"
	"testing"
)

// FuzzNotes: the note parser must survive any bytes a damaged core holds.
func FuzzNotes(f *testing.F) {
	note := func(typ uint32, name string, desc []byte) []byte {
		b := make([]byte, 12)
		binary.LittleEndian.PutUint32(b, uint32(len(name)+1))
		binary.LittleEndian.PutUint32(b[4:], uint32(len(desc)))
		binary.LittleEndian.PutUint32(b[8:], typ)
		n := append([]byte(name), 0)
		for len(n)%4 != 0 {
			n = append(n, 0)
		}
		b = append(b, n...)
		b = append(b, desc...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	file := make([]byte, 16+24)
	binary.LittleEndian.PutUint64(file, 1)
	binary.LittleEndian.PutUint64(file[8:], 4096)
	binary.LittleEndian.PutUint64(file[16:], 0x400000)
	binary.LittleEndian.PutUint64(file[24:], 0x401000)
	file = append(file, "/usr/bin/python3\x00"...)
	f.Add(note(ntFile, "CORE", file))
	f.Add(note(ntPrstatus, "CORE", make([]byte, 336)))
	f.Add(note(ntPrpsinfo, "CORE", make([]byte, 136)))
	f.Add(note(ntAuxv, "CORE", make([]byte, 32)))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Core{opened: map[string]*os.File{}}
		c.notes(data)
		_, _ = c.Maps()
		_ = c.ReadAt(make([]byte, 16), 0x400000)
	})
}
