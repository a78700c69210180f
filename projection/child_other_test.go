//go:build !linux

package projection_test

import "os/exec"

// dieWithParent does nothing where the kernel cannot tie a child's life
// to its parent's.
func dieWithParent(*exec.Cmd) {}
