package local

import (
	"errors"
	"os/exec"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

func keyOf(o client.Object) client.ObjectKey { return client.ObjectKeyFromObject(o) }

// errorsAsExit returns the exit code of a failed command, or -1 when err is not an exit.
func errorsAsExit(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return -1
}
