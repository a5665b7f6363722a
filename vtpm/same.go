package vtpm

import (
	"bytes"
	"crypto/subtle"
)

// Holds reports whether the bundle b, whose payload opened to opened, holds
// what sealing files (with modes) under manifest m would: the same layout,
// TPM version, VM, state encryption, and file contents and modes. This is
// what "the same bundle" means to a wrap asked again; the bytes of two
// sealings of one state always differ (fresh keys and nonces).
func (b *Bundle) Holds(opened map[string][]byte, m Manifest, files map[string][]byte, modes map[string]uint32) bool {
	have := b.Manifest
	if have.Layout != m.Layout || have.TPMVersion != m.TPMVersion ||
		!sameVM(have.VM, m.VM) || !sameEncryption(have.StateEncryption, m.StateEncryption) ||
		len(have.Files) != len(files) || len(opened) != len(files) {
		return false
	}
	for _, f := range have.Files {
		data, ok := files[f.Name]
		if !ok || f.Mode != modes[f.Name] {
			return false
		}
		if f.Name == SecretFile {
			if subtle.ConstantTimeCompare(opened[f.Name], data) != 1 {
				return false
			}
		} else if !bytes.Equal(opened[f.Name], data) {
			return false
		}
	}
	return true
}

func sameVM(a, b *VM) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

func sameEncryption(a, b *StateEncryption) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// BlobsOf returns the swtpm blobs that files (by name on disk, as Files
// returns them: "" for a linear or blob state file itself) hold in layout.
func BlobsOf(layout Layout, files map[string][]byte) (map[string][]byte, error) {
	switch layout {
	case LayoutDir:
		out := map[string][]byte{}
		for _, n := range []string{"permall", "volatilestate", "savestate"} {
			if b, ok := files[dirFile(n)]; ok {
				out[n] = b
			}
		}
		return out, nil
	case LayoutLinear:
		return parseLinear(files[""])
	default:
		return map[string][]byte{"permall": files[""]}, nil
	}
}

// HoldsBlobs reports whether the state s holds exactly blobs (by content,
// not by how its file happens to be laid out).
func (s *State) HoldsBlobs(layout Layout, blobs map[string][]byte) bool {
	if s.Layout != layout || len(s.Blobs) != len(blobs) {
		return false
	}
	for n, b := range blobs {
		have, ok := s.Blobs[n]
		if !ok || !bytes.Equal(have, b) {
			return false
		}
	}
	return true
}
