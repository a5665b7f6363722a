package vtpm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"errors"
	"testing"
)

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestRoundTripAndRefusals(t *testing.T) {
	state := bytes.Repeat([]byte("tpm state "), 300)
	k16, k32 := Key(bytes.Repeat([]byte{1}, 16)), Key(bytes.Repeat([]byte{2}, 32))
	for _, k := range []Key{nil, k16, k32} {
		blob, err := Encrypt(state, k)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decrypt(blob, k)
		if err != nil || !bytes.Equal(got, state) {
			t.Fatalf("key %d bytes: %v", len(k), err)
		}
		// Plain swtpm state has no integrity check of its own (the bundle
		// adds one in transit); encrypted state has its HMAC.
		for i := headerSize; k != nil && i < len(blob); i += 7 {
			mut := bytes.Clone(blob)
			mut[i] ^= 0x40
			if _, err := Decrypt(mut, k); err == nil {
				t.Fatalf("byte %d of an encrypted state changed and was accepted", i)
			}
		}
		for _, n := range []int{0, 5, 10, len(blob) - 1} {
			if _, err := Decrypt(blob[:n], k); kindOf(err) == 0 {
				t.Errorf("truncated to %d: %v", n, err)
			}
		}
	}
	enc, _ := Encrypt(state, k32)
	if _, err := Decrypt(enc, k16); kindOf(err) != KindKey {
		t.Errorf("128-bit key for 256-bit state: %v", err)
	}
	if _, err := Decrypt(enc, nil); kindOf(err) != KindKey {
		t.Errorf("no key: %v", err)
	}
	plain, _ := Encrypt(state, nil)
	if _, err := Decrypt(plain, k16); kindOf(err) != KindKey {
		t.Errorf("key for plain state: %v", err)
	}
}

func TestParseKeyFile(t *testing.T) {
	for in, n := range map[string]int{
		"0123456789abcdef0123456789abcdef":                                 16,
		"0x0123456789abcdef0123456789abcdef\n":                             16,
		"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff": 32,
	} {
		if k, err := ParseKeyFile([]byte(in), "hex"); err != nil || len(k) != n {
			t.Errorf("%q: %d %v", in, len(k), err)
		}
	}
	for _, bad := range []string{"", "abc", "zz23456789abcdef0123456789abcdef"} {
		if _, err := ParseKeyFile([]byte(bad), "hex"); kindOf(err) != KindKey {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := ParseKeyFile(make([]byte, 20), "binary"); kindOf(err) != KindKey {
		t.Error("a 20-byte binary key was accepted")
	}
}

// FuzzDecrypt: hostile state files are refused, never a panic.
func FuzzDecrypt(f *testing.F) {
	k := Key(bytes.Repeat([]byte{7}, 32))
	for _, key := range []Key{nil, k} {
		b, _ := Encrypt([]byte("state"), key)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, key := range []Key{nil, k, k[:16]} {
			if _, err := Decrypt(data, key); err != nil && kindOf(err) == 0 {
				t.Fatalf("error without a kind: %v", err)
			}
		}
	})
}

// TestVersion1 reads the legacy layout: no records; encrypted, AES-CBC with a
// zero IV over SHA-256(data) || data.
func TestVersion1(t *testing.T) {
	state := []byte("a legacy TPM state")
	hdr := func(flags uint16, body []byte) []byte {
		out := []byte{1, 1, 0, headerSize, byte(flags >> 8), byte(flags), 0, 0, 0, 0}
		n := len(out) + len(body)
		out[6], out[7], out[8], out[9] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return append(out, body...)
	}
	got, err := Decrypt(hdr(0, state), nil)
	if err != nil || !bytes.Equal(got, state) {
		t.Fatalf("plain v1: %q %v", got, err)
	}
	key := Key(bytes.Repeat([]byte{3}, 16))
	sum := sha256.Sum256(state)
	plain := append(sum[:], state...)
	pad := len(key) - len(plain)%len(key)
	plain = append(plain, bytes.Repeat([]byte{byte(pad)}, pad)...)
	block, _ := aes.NewCipher(key)
	ct := make([]byte, len(plain))
	cipher.NewCBCEncrypter(block, make([]byte, 16)).CryptBlocks(ct, plain)
	got, err = Decrypt(hdr(flagEncrypted, ct), key)
	if err != nil || !bytes.Equal(got, state) {
		t.Fatalf("encrypted v1: %q %v", got, err)
	}
	if _, err := Decrypt(hdr(flagEncrypted, ct), Key(bytes.Repeat([]byte{4}, 16))); kindOf(err) != KindKey {
		t.Errorf("wrong key on v1: %v", err)
	}
}
