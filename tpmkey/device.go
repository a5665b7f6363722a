// Package tpmkey keeps guardian keys inside a TPM 2.0: RSA-2048 keys
// generated in the TPM (fixedTPM, fixedParent), stored as "TSS2 PRIVATE KEY"
// PEM blobs under the standard H-2 storage key so that tpm2-tools and the
// OpenSSL tpm2 provider can load them too, and used through crypto.Signer
// and crypto.Decrypter so that the rest of guardctl never knows where a key
// lives. Every command runs in a salted HMAC session with parameter
// encryption, so that an unwrapped transport key never crosses the bus in
// clear, and every transient handle is flushed after use (a TPM without a
// resource manager, such as a raw swtpm, has only a few object slots).
//
// The package never prompts: a PIN comes from the callback the caller
// gives to Open.
package tpmkey

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/tcp"
)

// DefaultSpec is the TPM used when none is named: the kernel's resource
// manager, which the tss group may use.
const DefaultSpec = "/dev/tpmrm0"

// Device is one TPM, named by a spec and opened on first use. It is safe
// for concurrent use; commands to the TPM are serialized.
type Device struct {
	spec string
	// device path, or host:port of a swtpm's command and control ports
	path       string
	cmdAddr    string
	ctrlAddr   string
	pinFn      func() ([]byte, error)
	pin        []byte
	pinRead    bool
	mu         sync.Mutex
	conn       transport.TPMCloser
	idMu       sync.Mutex // guards identity, read once
	identity   *Identity
	identityOK bool
	// tpmForIdentity is the TPM while use runs f, for an error that reads
	// the TPM's identity to say why a key does not load.
	tpmForIdentity transport.TPM
}

// Open returns the TPM spec names: a device path (DefaultSpec when spec is
// empty), "device:PATH", or "swtpm:host=HOST,port=PORT" as tpm2-tools spell
// a swtpm TCTI (the control port is PORT+1). Nothing is opened until a key
// is used. pin, when not nil, is asked once for the PIN of a key that has
// one.
func Open(spec string, pin func() ([]byte, error)) (*Device, error) {
	if spec == "" {
		spec = DefaultSpec
	}
	d := &Device{spec: spec, pinFn: pin}
	switch {
	case strings.HasPrefix(spec, "swtpm:") || strings.HasPrefix(spec, "mssim:"):
		host, port := "127.0.0.1", 2321
		for _, kv := range strings.Split(spec[strings.IndexByte(spec, ':')+1:], ",") {
			if kv == "" {
				continue
			}
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "host":
				host = v
			case "port":
				p, err := strconv.Atoi(v)
				if err != nil || p < 1 || p > 65534 {
					return nil, errorf(KindSpec, "--tpm %q: port %q is not a TCP port number", spec, v)
				}
				port = p
			default:
				return nil, errorf(KindSpec, "--tpm %q: unknown option %q (swtpm:host=HOST,port=PORT)", spec, k)
			}
		}
		d.cmdAddr = net.JoinHostPort(host, strconv.Itoa(port))
		d.ctrlAddr = net.JoinHostPort(host, strconv.Itoa(port+1))
	case strings.HasPrefix(spec, "device:"):
		d.path = strings.TrimPrefix(spec, "device:")
	case strings.HasPrefix(spec, "/"):
		d.path = spec
	default:
		return nil, errorf(KindSpec, "--tpm %q is not a TPM: use a device path (/dev/tpmrm0) or swtpm:host=HOST,port=PORT", spec)
	}
	return d, nil
}

// Spec is the TPM's name as given.
func (d *Device) Spec() string { return d.spec }

// Close closes the connection, if one was opened.
func (d *Device) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		return nil
	}
	err := d.conn.Close()
	d.conn = nil
	return err
}

// use runs f with the TPM, opening it on first use.
func (d *Device) use(f func(t transport.TPM) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn == nil {
		c, err := d.open()
		if err != nil {
			return err
		}
		d.conn = c
	}
	t := retrying{d.conn}
	d.tpmForIdentity = t
	defer func() { d.tpmForIdentity = nil }()
	return f(t)
}

func (d *Device) open() (transport.TPMCloser, error) {
	if d.path != "" {
		c, err := openDevice(d.path)
		switch {
		case err == nil:
			return c, nil
		case errors.Is(err, fs.ErrNotExist):
			return nil, errorf(KindMissing, "there is no TPM at %s: this host has no TPM 2.0, or its driver is not loaded", d.path)
		case errors.Is(err, syscall.EBUSY):
			return nil, errorf(KindBusy, "the TPM at %s is busy: another program holds it open (use /dev/tpmrm0, the resource manager, rather than /dev/tpm0)", d.path)
		case errors.Is(err, fs.ErrPermission):
			return nil, errorf(KindMissing, "no permission to use the TPM at %s: add the user to the tss group, or run as root", d.path)
		default:
			return nil, errorf(KindOther, "opening the TPM at %s: %v", d.path, err)
		}
	}
	// swtpm's control port speaks swtpm's own protocol, not the TPM
	// simulator's platform commands: connect, but never send on it.
	c, err := tcp.Open(tcp.Config{CommandAddress: d.cmdAddr, PlatformAddress: d.ctrlAddr})
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, errorf(KindMissing, "no swtpm answers at %s (--tpm %s): start it, or name the right port", d.cmdAddr, d.spec)
		}
		return nil, errorf(KindMissing, "cannot reach the swtpm at %s (--tpm %s): %v", d.cmdAddr, d.spec, err)
	}
	return c, nil
}

// thePIN returns the PIN from the callback, asked once.
func (d *Device) thePIN() ([]byte, error) {
	if d.pinRead {
		return d.pin, nil
	}
	if d.pinFn == nil {
		return nil, errorf(KindPIN, "the key needs a PIN and none was given")
	}
	p, err := d.pinFn()
	if err != nil {
		return nil, err
	}
	d.pin, d.pinRead = p, true
	return p, nil
}

// retrying resends a command the TPM answered with RETRY, YIELDED or
// TESTING: warnings that say the command was not run and may be sent again
// as it was.
type retrying struct{ t transport.TPM }

const (
	rcYielded = 0x908
	rcTesting = 0x90A
	rcRetry   = 0x922
)

func (r retrying) Send(cmd []byte) ([]byte, error) {
	delay := 5 * time.Millisecond
	for i := 0; ; i++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < 10 || i == 20 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcYielded, rcTesting, rcRetry:
			time.Sleep(delay)
			if delay < 200*time.Millisecond {
				delay *= 2
			}
			continue
		}
		return rsp, nil
	}
}

// Kind classifies an Error, so that the command layer can choose an exit
// code and a hint.
type Kind int

const (
	// KindSpec: the --tpm value names no TPM guardctl can reach.
	KindSpec Kind = iota + 1
	// KindMissing: no TPM there, or not reachable.
	KindMissing
	// KindBusy: the TPM is held by another program.
	KindBusy
	// KindNotLoadable: the key blob does not load: another TPM's, or the
	// TPM was cleared since the key was made.
	KindNotLoadable
	// KindPCR: the PCRs the key is bound to have changed.
	KindPCR
	// KindPIN: the PIN is wrong or missing.
	KindPIN
	// KindLockout: the TPM is in dictionary-attack lockout.
	KindLockout
	// KindInvalid: a key blob that is not a guardctl TPM key.
	KindInvalid
	// KindOther: any other TPM failure.
	KindOther
)

// Error is every error this package returns.
type Error struct {
	Kind Kind
	Msg  string
	// Changed names the PCRs that differ from their values at creation
	// (KindPCR).
	Changed []string
}

func (e *Error) Error() string { return e.Msg }

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}
