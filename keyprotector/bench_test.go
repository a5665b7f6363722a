package keyprotector

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardctl/guardctl/guardian"
)

// rsaBound measures how many RSA-2048 private-key operations per second
// this machine does on all cores, for d.
func rsaBound(tb testing.TB, key *rsa.PrivateKey, d time.Duration) float64 {
	digest := sha256.Sum256([]byte("bound"))
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	start := time.Now()
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:]); err != nil {
					tb.Error(err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / time.Since(start).Seconds()
}

// BenchmarkBatchGrant grants one guardian to many key protectors on all
// cores, as 'kp grant FILE...' does (one Batch for all of them, at most one
// grant per core in its cryptography), and reports the rate against the
// machine's RSA-2048 bound measured in the same run: what the two
// private-key operations a batch does per key protector would allow (unwrap,
// sign the Wrappings; the owner's signature over the guardian's signing
// certificate is made once per batch), the work actually done.
func BenchmarkBatchGrant(b *testing.B) {
	owner, peer, newcomer := gen(b, "owner"), gen(b, "peer"), gen(b, "newcomer")
	_, xml, err := New(NewTransportKey(), owner, []*guardian.Guardian{peer.Public()})
	if err != nil {
		b.Fatal(err)
	}
	ids, target := []*guardian.Guardian{owner}, newcomer.Public()
	bound := rsaBound(b, owner.SigningKey.(*rsa.PrivateKey), time.Second) / 2
	batch := NewBatch(runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := batch.work(func() ([]byte, error) {
				p, err := Parse(xml)
				if err != nil {
					return nil, err
				}
				if err := p.verify(Policy{}, batch); err != nil {
					return nil, err
				}
				_, out, err := p.grant(ids, target, batch)
				return out, err
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	rate := float64(b.N) / time.Since(start).Seconds()
	b.ReportMetric(rate, "grants/s")
	b.ReportMetric(bound, "bound-grants/s")
	b.ReportMetric(100*rate/bound, "%-of-bound")
}

// BenchmarkSign is Go RSA-2048 PKCS#1 v1.5 signatures (SHA-256) made on
// every core at once: ns/op is the time per signature of all the cores
// together, so one signature takes ns/op x cores on each core, and the bound
// of a batch grant, cores / (3 x that), is 1 / (3 x ns/op). Measured on all
// cores at once, the bound counts only the cores the batch can have too (a
// single-threaded timing on a machine others use would count two free cores
// where there is one). cpu-ms/op is the CPU time of one signature, which
// other processes do not change.
func BenchmarkSign(b *testing.B) {
	key := gen(b, "owner").SigningKey.(*rsa.PrivateKey)
	digest := sha256.Sum256([]byte("bound"))
	cpu := processCPU()
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:]); err != nil {
				b.Error(err)
				return
			}
			n.Add(1)
		}
	})
	if used := processCPU() - cpu; used > 0 && n.Load() > 0 {
		b.ReportMetric(float64(used.Nanoseconds())/float64(n.Load())/1e6, "cpu-ms/op")
	}
}

// BenchmarkNew is kp new for an owner and one guardian.
func BenchmarkNew(b *testing.B) {
	owner, peer := gen(b, "owner"), gen(b, "peer")
	gs := []*guardian.Guardian{peer.Public()}
	for b.Loop() {
		if _, _, err := New(NewTransportKey(), owner, gs); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnwrap is kp unwrap: parse, verify every signature, unwrap.
func BenchmarkUnwrap(b *testing.B) {
	owner, peer := gen(b, "owner"), gen(b, "peer")
	_, xml, _ := New(NewTransportKey(), owner, []*guardian.Guardian{peer.Public()})
	ids := []*guardian.Guardian{peer}
	for b.Loop() {
		if _, err := parseVerifyUnwrap(xml, ids...); err != nil {
			b.Fatal(err)
		}
	}
}
