// The module of docs/jwt.md's Go recipe, a verifier on golang-jwt and
// keyfunc: the recipe's main.go is built with it. Test-only; no part of
// wxlogin, whose own go.mod requires nothing. (go 1.25.0, not 1.25:
// keyfunc v3.9.2 and golang.org/x/time v0.15.0 declare go 1.25.0.)
module jwt-recipe

go 1.25.0

require (
	github.com/MicahParks/keyfunc/v3 v3.9.2
	github.com/golang-jwt/jwt/v5 v5.3.1
)

require (
	github.com/MicahParks/jwkset v0.11.4 // indirect
	golang.org/x/time v0.15.0 // indirect
)
