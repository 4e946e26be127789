// Command testbox is the one-node cluster's sandbox ("pause") image and the isolation specs' probe: a static
// binary with no shell, run as a non-root user.
//
//	testbox [pause]            sleep until SIGTERM or SIGINT (the pod sandbox, and a workload that only runs)
//	testbox serve PORT         accept TCP connections on PORT and answer each with "testbox\n"
//	testbox dial HOST:PORT [TIMEOUT]
//	                           open one TCP connection; exit 0 when it connects, 1 when it does not (timeout 3s)
package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) == 0 {
		args = []string{"pause"}
	}
	switch args[0] {
	case "pause":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
	case "serve":
		if len(args) != 2 {
			fail("usage: testbox serve PORT")
		}
		l, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			fail(err.Error())
		}
		fmt.Println("serving on", l.Addr())
		go func() {
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
			<-sig
			os.Exit(0)
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				continue
			}
			_, _ = c.Write([]byte("testbox\n"))
			_ = c.Close()
		}
	case "dial":
		if len(args) < 2 || len(args) > 3 {
			fail("usage: testbox dial HOST:PORT [TIMEOUT]")
		}
		timeout := 3 * time.Second
		if len(args) == 3 {
			d, err := time.ParseDuration(args[2])
			if err != nil {
				fail(err.Error())
			}
			timeout = d
		}
		c, err := net.DialTimeout("tcp", args[1], timeout)
		if err != nil {
			fmt.Println("refused:", err)
			os.Exit(1)
		}
		_ = c.Close()
		fmt.Println("connected to", args[1])
	default:
		fail("unknown command " + args[0] + ": pause, serve or dial")
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "testbox:", msg)
	os.Exit(2)
}
