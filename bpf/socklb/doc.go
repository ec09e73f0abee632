// Package socklb is socket-layer load balancing, as Cilium's socket LB:
// cgroup programs translate a Service's ClusterIP:port to a backend at
// connect() and sendmsg(), report each decision, and give the application
// the ClusterIP back at recvmsg() and getpeername().
package socklb
