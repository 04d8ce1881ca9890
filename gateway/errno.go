package gateway

import "syscall"

// syscallEMFILE is "too many open files": accept backs off instead of failing the server.
var syscallEMFILE error = syscall.EMFILE
