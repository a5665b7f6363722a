// echo is a Windows console program the harness test runs under Wine: it
// prints its arguments, one environment variable and its standard input,
// and exits with the code it is asked for.
package main

import (
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"strconv"
)

func main() {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		fmt.Fprintln(os.Stderr, "rand:", err)
		os.Exit(1)
	}
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		os.Exit(1)
	}
	fmt.Printf("args=%q\nenv=%s\nstdin=%s\n", os.Args[1:], os.Getenv("WINETEST_ECHO"), in)
	fmt.Fprintln(os.Stderr, "to stderr")
	code, _ := strconv.Atoi(os.Getenv("WINETEST_EXIT"))
	os.Exit(code)
}
