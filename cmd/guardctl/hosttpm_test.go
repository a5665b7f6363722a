package main

import (
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// hostTPMs are the swtpm processes standing in for hosts' TPMs, per script.
var hostTPMs = struct {
	sync.Mutex
	m map[*testscript.TestScript]map[string]*swtpmProc
}{m: map[*testscript.TestScript]map[string]*swtpmProc{}}

type swtpmProc struct {
	cmd    *exec.Cmd
	ctrl   int
	exited chan struct{}
}

// hosttpm start DIR | stop DIR | restart DIR runs a swtpm on DIR (its state
// directory, made if missing) on free loopback ports, as a host's TPM:
// start and restart point GUARDCTL_TPM and TPM2TOOLS_TCTI at it. stop shuts
// it down over its control port, as a reboot would. Every swtpm a script
// started is stopped when it ends.
func cmdHostTPM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: hosttpm start|stop|restart DIR")
	}
	dir := ts.MkAbs(args[1])
	hostTPMs.Lock()
	procs := hostTPMs.m[ts]
	if procs == nil {
		procs = map[string]*swtpmProc{}
		hostTPMs.m[ts] = procs
		ts.Defer(func() {
			hostTPMs.Lock()
			defer hostTPMs.Unlock()
			for _, c := range hostTPMs.m[ts] {
				stopSwtpm(c)
			}
			delete(hostTPMs.m, ts)
		})
	}
	hostTPMs.Unlock()
	switch args[0] {
	case "stop", "restart":
		hostTPMs.Lock()
		c := procs[dir]
		delete(procs, dir)
		hostTPMs.Unlock()
		if c == nil {
			ts.Fatalf("no swtpm runs on %s", dir)
		}
		stopSwtpm(c)
		if args[0] == "stop" {
			return
		}
	case "start":
	default:
		ts.Fatalf("usage: hosttpm start|stop|restart DIR")
	}
	ts.Check(os.MkdirAll(dir, 0o700))
	for try := 0; try < 20; try++ {
		port := 20000 + 2*rand.IntN(15000)
		if !portsFree(port, port+1) {
			continue
		}
		c := exec.Command("swtpm", "socket", "--tpm2", "--tpmstate", "dir="+dir,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		if err := c.Start(); err != nil {
			ts.Fatalf("starting swtpm: %v", err)
		}
		exited := make(chan struct{})
		go func() { c.Wait(); close(exited) }()
		up := false
		for i := 0; i < 50 && !up; i++ {
			select {
			case <-exited:
				i = 50
			case <-time.After(100 * time.Millisecond):
				if conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1))); err == nil {
					conn.Close()
					up = true
				}
			}
		}
		if up {
			// the listener may be another test's swtpm: ours must still be up
			select {
			case <-exited:
				up = false
			case <-time.After(300 * time.Millisecond):
			}
		}
		if !up {
			c.Process.Kill()
			<-exited
			continue // another test took the ports meanwhile
		}
		hostTPMs.Lock()
		procs[dir] = &swtpmProc{cmd: c, ctrl: port + 1, exited: exited}
		hostTPMs.Unlock()
		spec := fmt.Sprintf("swtpm:host=127.0.0.1,port=%d", port)
		ts.Setenv("GUARDCTL_TPM", spec)
		ts.Setenv("TPM2TOOLS_TCTI", spec)
		return
	}
	ts.Fatalf("swtpm did not start on free loopback ports")
}

func portsFree(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// stopSwtpm shuts swtpm down over its control channel (so that it saves
// its state), then kills it if it is still there.
func stopSwtpm(p *swtpmProc) {
	exec.Command("swtpm_ioctl", "--tcp", fmt.Sprintf("127.0.0.1:%d", p.ctrl), "-s").Run()
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// tss2split FILE writes FILE.pub and FILE.priv: the TPM2B_PUBLIC and
// TPM2B_PRIVATE of a TSS2 PRIVATE KEY PEM, for tpm2_load -u -r (tpm2-tools
// 5.4 does not read the PEM itself). Only encoding/asn1 reads it here, not
// the library guardctl writes it with.
func cmdTSS2Split(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: tss2split FILE")
	}
	raw, err := os.ReadFile(ts.MkAbs(args[0]))
	ts.Check(err)
	b, _ := pem.Decode(raw)
	if b == nil || b.Type != "TSS2 PRIVATE KEY" {
		ts.Fatalf("%s is not a TSS2 PRIVATE KEY PEM", args[0])
	}
	var k struct {
		Type      asn1.ObjectIdentifier
		EmptyAuth bool          `asn1:"optional,explicit,tag:0"`
		Policy    asn1.RawValue `asn1:"optional,explicit,tag:1"`
		Secret    []byte        `asn1:"optional,explicit,tag:2"`
		Parent    int64
		Pub       []byte
		Priv      []byte
	}
	if _, err := asn1.Unmarshal(b.Bytes, &k); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	if !k.Type.Equal(asn1.ObjectIdentifier{2, 23, 133, 10, 1, 3}) || k.Parent != 0x40000001 {
		ts.Fatalf("%s: type %v parent %#x, want a loadable key (2.23.133.10.1.3) under the owner (0x40000001)", args[0], k.Type, k.Parent)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".pub"), k.Pub, 0o600))
	ts.Check(os.WriteFile(ts.MkAbs(args[0]+".priv"), k.Priv, 0o600))
}
