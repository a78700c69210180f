package projection_test

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel SIGKILL cmd's process when the test
// process ends, so that a test killed by its timeout leaves no child
// holding transactions open (which would hold back every gap-safe reader
// of the server).
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
