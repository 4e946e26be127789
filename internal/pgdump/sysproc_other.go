//go:build !linux

package pgdump

import (
	"os"
	"syscall"
)

// childSysProcAttr: outside Linux there is no parent-death signal; a dump whose helper died fails on its next
// write to the closed pipe.
func childSysProcAttr() *syscall.SysProcAttr { return nil }

// growPipe: only Linux lets a process size its pipes.
func growPipe(*os.File) {}
