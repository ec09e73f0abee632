package bpf

//go:generate go tool bpf2go -tags linux -cc clang-19 -strip llvm-strip-19 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target bpfel -type flow_event -type event_type -type counter -type flow_flag -type verdict -type drop_reason -type kdrop -type l7_event -type l7_counter -type l7_limits -type l7_port bpf flow.c -- -I./include
