package pgdump

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// childSysProcAttr makes the kernel kill the dump when the helper dies (restic killed it, say), so a dump does not
// go on reading the database for nobody.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// growPipe asks for a 1 MiB pipe buffer (the default maximum for unprivileged processes) instead of the default
// 64 KiB, so that a 1 MiB chunk of the dump crosses the pipe in one read or write instead of sixteen, with fewer
// wake-ups of reader and writer: 20–25 % less CPU for the filter in a measurement over 640 MiB. Best effort: a
// file that is not a pipe, or a limit lower than 1 MiB, leaves it as it was.
func growPipe(f *os.File) {
	if sc, err := f.SyscallConn(); err == nil {
		_ = sc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
}
