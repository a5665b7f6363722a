//go:build !unix

package keyprotector

import "time"

// processCPU is not measured here: BenchmarkSign then reports no CPU time.
func processCPU() time.Duration { return 0 }
