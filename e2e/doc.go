// Package e2e holds fibgate's end-to-end tests: fabrics of network
// namespaces with FRR neighbours, stock gobgpd and fibgate's own binaries,
// where what the gate promises is checked at the neighbour, and the labs
// built from the containerlab topologies in labs/.
package e2e
