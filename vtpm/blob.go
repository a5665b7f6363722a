// Package vtpm reads and writes software vTPM state: swtpm's state blobs
// (plain or encrypted with a key or passphrase), and the bundle that carries
// a state to another host under a key protector.
package vtpm

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"strings"

	"github.com/guardctl/guardctl/internal/fault"
)

// The blob format of swtpm's state files (tpm2-00.permall and friends): a
// 10-byte big-endian header, then (in version 2) tag-length-value records.
const (
	headerSize    = 10
	headerVersion = 2

	flagEncrypted       = 0x01
	flagMigrationData   = 0x04
	flagEncrypted256Bit = 0x08

	tagData          = 1
	tagEncryptedData = 2
	tagHMAC          = 3
	tagIV            = 6
)

// MaxBlobSize bounds a state blob read from outside; swtpm's are a few KiB
// to tens of KiB (and Proxmox's linear file is 4 MiB).
const MaxBlobSize = 16 << 20

// Key is an AES key swtpm encrypts state with: 16 or 32 bytes.
type Key []byte

// ParseKeyFile reads a key the way swtpm's --key file= does: format "hex"
// (the default: 32 or 64 hex digits, optional 0x, trailing white space
// allowed) or "binary" (exactly 16 or 32 bytes).
func ParseKeyFile(data []byte, format string) (Key, error) {
	switch format {
	case "", "hex":
		s := strings.TrimRight(string(data), " \t\r\n")
		s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
		if len(s) != 32 && len(s) != 64 {
			return nil, errorf(KindKey, "the key file holds %d characters; a hex key is 32 or 64 hex digits (use --key-format binary for a raw key)", len(s))
		}
		k, err := hex.DecodeString(s)
		if err != nil {
			return nil, errorf(KindKey, "the key file is not hex")
		}
		return k, nil
	case "binary":
		if len(data) != 16 && len(data) != 32 {
			return nil, errorf(KindKey, "a binary key file is exactly 16 or 32 bytes, not %d", len(data))
		}
		return Key(bytes.Clone(data)), nil
	}
	return nil, errorf(KindKey, "unknown key format %q (want hex or binary)", format)
}

// KDF is how swtpm derives a key from a passphrase: --key pwdfile=F,kdf=…
type KDF string

const (
	// KDFPBKDF2 is swtpm's default (and what libvirt and swtpm_setup use):
	// PBKDF2-HMAC-SHA512, salt "swtpm", 1000 iterations.
	KDFPBKDF2 KDF = "pbkdf2"
	// KDFSHA512 is kdf=sha512: the first 16 or 32 bytes of SHA-512 of the
	// passphrase.
	KDFSHA512 KDF = "sha512"
)

// KDFs are swtpm's key derivations, its default first.
var KDFs = []KDF{KDFPBKDF2, KDFSHA512}

// ParseKDF reads a kdf= value; "" is swtpm's default, pbkdf2.
func ParseKDF(s string) (KDF, error) {
	switch KDF(s) {
	case "", KDFPBKDF2:
		return KDFPBKDF2, nil
	case KDFSHA512:
		return KDFSHA512, nil
	}
	return "", errorf(KindKey, "unknown key derivation %q (swtpm's are pbkdf2 and sha512)", s)
}

// KeyFromPassphrase derives the key swtpm's --key pwdfile=F,kdf=… derives.
// The passphrase is every byte given, a trailing newline included, as
// swtpm reads it.
func KeyFromPassphrase(passphrase []byte, bits int, kdf KDF) (Key, error) {
	if bits != 128 && bits != 256 {
		return nil, errorf(KindKey, "key size %d bits is not one swtpm uses (128 or 256)", bits)
	}
	switch kdf {
	case KDFPBKDF2:
		k, err := pbkdf2.Key(sha512.New, string(passphrase), []byte("swtpm"), 1000, bits/8)
		if err != nil {
			return nil, err
		}
		return k, nil
	case KDFSHA512:
		sum := sha512.Sum512(passphrase)
		return Key(bytes.Clone(sum[:bits/8])), nil
	}
	return nil, errorf(KindKey, "unknown key derivation %q (swtpm's are pbkdf2 and sha512)", kdf)
}

// Info is what a blob's header says.
type Info struct {
	Version   int
	Encrypted bool
	KeyBits   int // 128 or 256 when encrypted
	Size      int
}

// Inspect reads a blob's header without a key.
func Inspect(blob []byte) (Info, error) {
	if len(blob) > MaxBlobSize {
		return Info{}, errorf(KindInvalid, "the state is %d bytes, more than %d", len(blob), MaxBlobSize)
	}
	if len(blob) < headerSize {
		return Info{}, errorf(KindInvalid, "the state is %d bytes, too short for swtpm's 10-byte header", len(blob))
	}
	version, minVersion := blob[0], blob[1]
	hdrsize := binary.BigEndian.Uint16(blob[2:])
	flags := binary.BigEndian.Uint16(blob[4:])
	totlen := binary.BigEndian.Uint32(blob[6:])
	switch {
	case hdrsize != headerSize:
		return Info{}, errorf(KindInvalid, "the state's header size is %d, not 10: not a swtpm state blob", hdrsize)
	case int64(totlen) != int64(len(blob)):
		return Info{}, errorf(KindInvalid, "the state's header says %d bytes but it has %d: it is truncated or not a swtpm state blob", totlen, len(blob))
	case minVersion > headerVersion:
		return Info{}, errorf(KindUnsupported, "the state needs blob version %d; guardctl reads versions 1 and 2", minVersion)
	case version != 1 && version != 2:
		return Info{}, errorf(KindUnsupported, "blob version %d is not supported", version)
	case flags&flagMigrationData != 0:
		return Info{}, errorf(KindUnsupported, "this is a migration blob (swtpm_ioctl --save), not a state file")
	}
	info := Info{Version: int(version), Encrypted: flags&flagEncrypted != 0, Size: len(blob)}
	if info.Encrypted {
		info.KeyBits = 128
		if flags&flagEncrypted256Bit != 0 {
			info.KeyBits = 256
		}
	}
	return info, nil
}

// tlvs splits a version-2 body into its records, refusing a malformed one.
func tlvs(body []byte) (map[uint16][]byte, error) {
	out := map[uint16][]byte{}
	for len(body) > 0 {
		if len(body) < 6 {
			return nil, errorf(KindInvalid, "the state ends inside a record header")
		}
		tag, n := binary.BigEndian.Uint16(body), binary.BigEndian.Uint32(body[2:])
		body = body[6:]
		if int64(n) > int64(len(body)) {
			return nil, errorf(KindInvalid, "a record of the state runs past its end: it is truncated")
		}
		if _, dup := out[tag]; !dup {
			out[tag] = body[:n]
		}
		body = body[n:]
	}
	return out, nil
}

// Decrypt returns the TPM state inside blob. key must be nil for a plain
// blob and the right key for an encrypted one; a wrong key is detected by
// the HMAC before anything is decrypted.
func Decrypt(blob []byte, key Key) ([]byte, error) {
	info, err := Inspect(blob)
	if err != nil {
		return nil, err
	}
	body := blob[headerSize:]
	if !info.Encrypted {
		if key != nil {
			return nil, errorf(KindKey, "the state is not encrypted, but a key was given")
		}
		if info.Version == 1 {
			return bytes.Clone(body), nil
		}
		recs, err := tlvs(body)
		if err != nil {
			return nil, err
		}
		data, ok := recs[tagData]
		if !ok {
			return nil, errorf(KindInvalid, "the state has no data record")
		}
		return bytes.Clone(data), nil
	}
	if key == nil {
		return nil, errorf(KindKey, "the state is encrypted (AES-%d); give its key or passphrase", info.KeyBits)
	}
	if info.Version == 1 {
		return decryptV1(body, key)
	}
	if len(key)*8 != info.KeyBits {
		return nil, errorf(KindKey, "the state is encrypted with a %d-bit key, and the key given is %d bits", info.KeyBits, len(key)*8)
	}
	recs, err := tlvs(body)
	if err != nil {
		return nil, err
	}
	ct, ok1 := recs[tagEncryptedData]
	mac, ok2 := recs[tagHMAC]
	iv := recs[tagIV]
	if !ok1 || !ok2 {
		return nil, errorf(KindInvalid, "the encrypted state lacks its data or HMAC record")
	}
	m := hmac.New(sha256.New, key)
	m.Write(ct)
	m.Write(iv)
	if !hmac.Equal(m.Sum(nil), mac) {
		return nil, errorf(KindKey, "the key does not open the state (HMAC mismatch): wrong key or passphrase, or the state was changed")
	}
	if len(iv) < aes.BlockSize {
		iv = make([]byte, aes.BlockSize) // swtpm falls back to a zero IV without one
	}
	return cbcDecrypt(key, iv[:aes.BlockSize], ct)
}

func decryptV1(body []byte, key Key) ([]byte, error) {
	plain, err := cbcDecrypt(key, make([]byte, aes.BlockSize), body)
	if err != nil {
		return nil, errorf(KindKey, "the key does not open the state: wrong key or passphrase")
	}
	if len(plain) < sha256.Size {
		return nil, errorf(KindInvalid, "the encrypted state is too short")
	}
	sum := sha256.Sum256(plain[sha256.Size:])
	if !hmac.Equal(sum[:], plain[:sha256.Size]) {
		return nil, errorf(KindKey, "the key does not open the state (hash mismatch): wrong key or passphrase, or the state was changed")
	}
	return plain[sha256.Size:], nil
}

// cbcDecrypt undoes swtpm's AES-CBC with its padding to a multiple of the
// key length.
func cbcDecrypt(key, iv, ct []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, errorf(KindKey, "bad key: %v", err)
	}
	if len(ct) == 0 || len(ct)%aes.BlockSize != 0 {
		return nil, errorf(KindInvalid, "the encrypted state is %d bytes, not whole AES blocks", len(ct))
	}
	plain := make([]byte, len(ct))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(plain, ct)
	pad := int(plain[len(plain)-1])
	if pad < 1 || pad > len(key) || pad > len(plain) {
		return nil, errorf(KindKey, "the state decrypts to bad padding: wrong key")
	}
	for _, b := range plain[len(plain)-pad:] {
		if int(b) != pad {
			return nil, errorf(KindKey, "the state decrypts to bad padding: wrong key")
		}
	}
	return plain[:len(plain)-pad], nil
}

// Encrypt writes state as a version-2 blob: plain when key is nil, else
// AES-CBC under key (16 or 32 bytes) with a fresh IV and an HMAC, as swtpm
// writes it.
func Encrypt(state []byte, key Key) ([]byte, error) {
	var flags uint16
	var body []byte
	if key == nil {
		body = appendTLV(nil, tagData, state)
	} else {
		if len(key) != 16 && len(key) != 32 {
			return nil, errorf(KindKey, "a swtpm key is 16 or 32 bytes, not %d", len(key))
		}
		flags = flagEncrypted
		if len(key) == 32 {
			flags |= flagEncrypted256Bit
		}
		iv := make([]byte, len(key)) // swtpm stores a key-length IV and uses its first block
		if _, err := rand.Read(iv); err != nil {
			return nil, err
		}
		pad := len(key) - len(state)%len(key)
		padded := append(bytes.Clone(state), bytes.Repeat([]byte{byte(pad)}, pad)...)
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		ct := make([]byte, len(padded))
		cipher.NewCBCEncrypter(block, iv[:aes.BlockSize]).CryptBlocks(ct, padded)
		m := hmac.New(sha256.New, key)
		m.Write(ct)
		m.Write(iv)
		body = appendTLV(nil, tagEncryptedData, ct)
		body = appendTLV(body, tagHMAC, m.Sum(nil))
		body = appendTLV(body, tagIV, iv)
	}
	out := make([]byte, headerSize, headerSize+len(body))
	out[0], out[1] = headerVersion, 1
	binary.BigEndian.PutUint16(out[2:], headerSize)
	binary.BigEndian.PutUint16(out[4:], flags)
	binary.BigEndian.PutUint32(out[6:], uint32(headerSize+len(body)))
	return append(out, body...), nil
}

func appendTLV(dst []byte, tag uint16, v []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, tag)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// Kind classifies an Error.
type Kind int

const (
	// KindInvalid: not a state blob, or a damaged one.
	KindInvalid Kind = iota + 1
	// KindKey: a missing, wrong or malformed key or passphrase.
	KindKey
	// KindUnsupported: a blob version or kind guardctl does not handle.
	KindUnsupported
	// KindTampered: a bundle that was changed after it was sealed.
	KindTampered
	// KindNoState: there is no TPM state where one was named.
	KindNoState
)

// Error is every error this package returns about its input.
type Error = fault.Error[Kind]

func errorf(k Kind, format string, args ...any) error { return fault.New(k, format, args...) }
