package socklb

//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target bpfel -type sock_event4 -type sock_event6 -type sock_verdict -type sock_hook -type sock_counter -type lb_algo -type lb_peer_slot sock sock.c -- -I../include
