package tpmkey

import (
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

func openDevice(path string) (transport.TPMCloser, error) { return linuxtpm.Open(path) }
