//go:build !unix

package webhook

import "net"

// idleBytes cannot tell, here: unsolicited reads for idleCheck instead.
func idleBytes(net.Conn) (any, ok bool) { return false, false }
