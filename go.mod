module krait

go 1.26.8
