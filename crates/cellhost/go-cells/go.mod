module cellhost.test/gocells

go 1.25
