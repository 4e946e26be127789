package pgdump

import "syscall"

// childSysProcAttr makes the kernel kill the dump when the helper dies (restic killed it, say), so a dump does not
// go on reading the database for nobody.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
