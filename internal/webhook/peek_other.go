//go:build !unix

package webhook

import "net"

// idleBytes cannot tell, here: unsolicited reads for idleCheck instead.
func idleBytes(net.Conn) (waiting, ok bool) { return false, false }
