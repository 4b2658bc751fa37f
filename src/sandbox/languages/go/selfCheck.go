// The sandbox's self-check for Go sessions (host/selfChecks.ts): it prints 42, whether the host's
// /etc/shadow is visible (false when isolated) and the uid it runs as.
package main

import (
	"fmt"
	"os"
)

func main() {
	_, err := os.Stat("/etc/shadow")
	fmt.Println(6*7, err == nil, os.Getuid())
}
