module wxlogin

go 1.25
