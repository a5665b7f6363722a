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
// cores, as 'kp grant FILE...' does, and reports the rate against the
// machine's RSA-2048 bound measured in the same run: a grant needs three
// private-key operations (unwrap, sign the new wrapping, sign the
// Wrappings), so the bound is the RSA rate divided by three.
func BenchmarkBatchGrant(b *testing.B) {
	owner, peer, newcomer := gen(b, "owner"), gen(b, "peer"), gen(b, "newcomer")
	_, xml, err := New(NewTransportKey(), owner, []*guardian.Guardian{peer.Public()})
	if err != nil {
		b.Fatal(err)
	}
	ids, target := []*guardian.Guardian{owner}, newcomer.Public()
	bound := rsaBound(b, owner.SigningKey, time.Second) / 3
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, err := Parse(xml)
			if err != nil {
				b.Error(err)
				return
			}
			if err := p.Verify(Policy{}); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := p.Grant(ids, target); err != nil {
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
