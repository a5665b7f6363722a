package vtpm

import (
	"encoding/binary"
	"math/bits"
)

// swtpm's linear file backend (backend-uri=file://, as Proxmox uses): one
// file holding every state blob, after a little-endian header of a magic,
// a version, the header size and 15 slots {offset, data length, section
// length}; slot 0 is permall, 1 volatilestate, 2 savestate.
const (
	linearMagic   = 0x737774706d6c696e // "swtpmlin"
	linearVersion = 1
	linearSlots   = 15
	linearHdrSize = 8 + 1 + 1 + 2 + linearSlots*12
	slotPermall   = 0
	slotVolatile  = 1
	slotSavestate = 2
)

// slotNames maps linear slots to the state names swtpm uses.
var slotNames = map[int]string{slotPermall: "permall", slotVolatile: "volatilestate", slotSavestate: "savestate"}

// isLinear reports whether data starts with the linear file magic.
func isLinear(data []byte) bool {
	return len(data) >= 8 && binary.LittleEndian.Uint64(data) == linearMagic
}

// parseLinear returns the blobs of a linear state file by state name.
func parseLinear(data []byte) (map[string][]byte, error) {
	if len(data) < linearHdrSize {
		return nil, errorf(KindInvalid, "the linear state file is %d bytes, shorter than its header", len(data))
	}
	if v := data[8]; v > linearVersion {
		return nil, errorf(KindUnsupported, "linear state file version %d is not supported", v)
	}
	hdrsize := int(binary.LittleEndian.Uint16(data[10:]))
	if hdrsize < linearHdrSize || hdrsize > len(data) {
		return nil, errorf(KindInvalid, "the linear state file's header size %d is wrong", hdrsize)
	}
	out := map[string][]byte{}
	for i := range linearSlots {
		s := data[12+i*12:]
		off, n := binary.LittleEndian.Uint32(s), binary.LittleEndian.Uint32(s[4:])
		if off == 0 {
			continue
		}
		name, known := slotNames[i]
		if !known {
			return nil, errorf(KindUnsupported, "the linear state file holds more than one TPM (slot %d); guardctl handles one", i)
		}
		if int64(off) < int64(hdrsize) || int64(off)+int64(n) > int64(len(data)) {
			return nil, errorf(KindInvalid, "slot %s of the linear state file lies outside the file: it is truncated or damaged", name)
		}
		out[name] = data[off : off+n]
	}
	return out, nil
}

// buildLinear lays blobs out as swtpm does (sections rounded up to a power
// of two, in slot order) and pads the file to at least minSize, so that a
// fixed-size volume keeps its size.
func buildLinear(blobs map[string][]byte, minSize int) []byte {
	out := make([]byte, linearHdrSize)
	binary.LittleEndian.PutUint64(out, linearMagic)
	out[8] = linearVersion
	binary.LittleEndian.PutUint16(out[10:], linearHdrSize)
	for i := range linearSlots {
		b, ok := blobs[slotNames[i]]
		if !ok || slotNames[i] == "" {
			continue
		}
		section := 1 << bits.Len32(uint32(max(len(b), 1)-1))
		s := out[12+i*12:]
		binary.LittleEndian.PutUint32(s, uint32(len(out)))
		binary.LittleEndian.PutUint32(s[4:], uint32(len(b)))
		binary.LittleEndian.PutUint32(s[8:], uint32(section))
		out = append(out, b...)
		out = append(out, make([]byte, section-len(b))...)
	}
	if len(out) < minSize {
		out = append(out, make([]byte, minSize-len(out))...)
	}
	return out
}
