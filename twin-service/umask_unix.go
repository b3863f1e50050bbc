//go:build unix

package main

import "syscall"

// privateUmask makes every file the process creates readable by its own
// user only, including the files of libraries that pick their own modes.
func privateUmask() { syscall.Umask(0o077) }
