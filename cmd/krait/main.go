// Command krait is a debugger for live Python processes.
package main

import "krait/internal/cli"

func main() { cli.Run() }
