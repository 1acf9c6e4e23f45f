module krait

go 1.26.8

require (
	github.com/chzyer/readline v1.5.1
	golang.org/x/sys v0.50.0
)

require github.com/creack/pty v1.1.24
