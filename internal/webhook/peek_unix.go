//go:build unix

package webhook

import (
	"errors"
	"net"
	"syscall"
)

// idleBytes reports whether the socket under nc holds bytes, or the end of
// the connection, without waiting and without taking them (MSG_PEEK); ok
// is false when it cannot tell.
func idleBytes(nc net.Conn) (waiting, ok bool) {
	sc, isSyscall := nc.(syscall.Conn)
	if !isSyscall {
		return false, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false, false
	}
	var peekErr error
	if err := raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return true, true // the connection is closed already
	}
	switch {
	case errors.Is(peekErr, syscall.EAGAIN) || errors.Is(peekErr, syscall.EWOULDBLOCK):
		return false, true
	case peekErr != nil:
		return true, true // reset: as good as closed
	}
	return true, true // a byte, or none: the receiver closed it
}
