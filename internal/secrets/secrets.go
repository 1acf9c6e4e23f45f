// Package secrets decides which names hold secrets — a dict key, an
// environment variable, a request header in request.META, a Django
// setting, an attribute or a local variable — so that krait shows their
// values as <redacted> unless asked (--show-secrets). It is the one rule
// for every place krait renders values (dump, requests, and the attach
// agent, which applies the same rule: see Words and Exact).
//
// A name is split into words at '_', '-', '.', spaces and lower-to-upper
// case changes ("apiKey" is api, key) and compared without case. It is
// secret when
//
//   - it is one of Exact (HTTP_COOKIE, HTTP_AUTHORIZATION, COOKIES, …), or
//   - a word contains one of Words (SECRET, PASSWORD, PASSWD, PASSPHRASE,
//     TOKEN, CREDENTIAL, PRIVATE, SIGNATURE, APIKEY, SESSIONID), or
//   - a word is KEY, DSN, AUTH, COOKIE or PWD, or ends with KEY
//     ("secretkey", "accesskey"), and the name is more than that one word
//     (a lone "key" is nearly always a loop variable or a cache key);
//
// unless its last word says it describes a secret rather than holds it
// (Describing: NAME, PREFIX, FUNCTION, HASHERS, VALIDATORS, TIMEOUT, AGE,
// LENGTH, PATH, FILE, DOMAIN, HTTPONLY, SECURE, SAMESITE, …: SESSION_COOKIE_NAME,
// KEY_PREFIX, AUTH_PASSWORD_VALIDATORS) or its first word is one that
// names a key, not a secret (Keys: PRIMARY, FOREIGN, CACHE, SORT, PK, …:
// cache_key, sort_key).
package secrets

import (
	"net/url"
	"strings"
	"unicode"
)

// Redacted replaces a secret value.
const Redacted = "<redacted>"

// Exact are names secret as a whole (upper case).
var Exact = []string{"HTTP_COOKIE", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION", "AUTHORIZATION",
	"PROXY_AUTHORIZATION", "COOKIE", "COOKIES", "SET_COOKIE", "HTTP_X_API_KEY", "DATABASE_URL", "REDIS_URL",
	"BROKER_URL", "CELERY_BROKER_URL", "CACHE_URL", "AMQP_URL", "MONGO_URL", "MONGODB_URI", "SENTRY_DSN"}

// Words make a name secret wherever they appear in one of its words.
var Words = []string{"SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "TOKEN", "CREDENTIAL", "PRIVATE",
	"SIGNATURE", "APIKEY", "SESSIONID"}

// Whole are words that make a name of two or more words secret.
var Whole = []string{"KEY", "DSN", "AUTH", "COOKIE", "PWD", "PASS"}

// Describing are last words of names that describe a secret without
// holding it.
var Describing = []string{"NAME", "NAMES", "PREFIX", "FUNCTION", "FUNC", "HASHERS", "VALIDATORS", "TIMEOUT",
	"AGE", "LENGTH", "LEN", "PATH", "FILE", "DOMAIN", "HTTPONLY", "SECURE", "SAMESITE", "BACKEND", "BACKENDS",
	"CLASS", "MODEL", "URL_NAME", "HEADER", "ENABLED", "REQUIRED", "USED", "COUNT", "FIELD", "FIELDS", "TYPE"}

// Keys are first words of names that are keys of a table, not secrets.
var Keys = []string{"PRIMARY", "FOREIGN", "CACHE", "SORT", "PK", "FK", "DICT", "LOOKUP", "PARTITION", "HASH", "ROW", "MAP", "GROUP"}

// IsSecret says whether a value stored under name looks secret.
func IsSecret(name string) bool {
	up := strings.ToUpper(name)
	for _, e := range Exact {
		if up == e {
			return true
		}
	}
	words := split(name)
	if len(words) == 0 {
		return false
	}
	last := words[len(words)-1]
	for _, d := range Describing {
		if last == d && len(words) > 1 {
			return false
		}
	}
	for _, w := range words {
		for _, s := range Words {
			if strings.Contains(w, s) {
				return true
			}
		}
	}
	if len(words) < 2 {
		return false
	}
	for _, k := range Keys {
		if words[0] == k {
			return false
		}
	}
	for _, w := range words {
		for _, s := range Whole {
			if w == s || s == "KEY" && strings.HasSuffix(w, "KEY") && len(w) > 3 && !strings.HasSuffix(w, "MONKEY") {
				return true
			}
		}
	}
	return false
}

// split breaks a name into upper-case words.
func split(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToUpper(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case r == '_' || r == '-' || r == '.' || r == ' ' || r == ':' || r == '/':
			flush()
		case unicode.IsUpper(r) && i > 0 && unicode.IsLower(rs[i-1]):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return words
}

// Query redacts the values of secret-looking parameters of a URL query
// string ("token=abc&page=2" becomes "token=<redacted>&page=2"), keeping
// everything else as it was.
func Query(q string) string {
	if q == "" {
		return q
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if IsSecret(name) {
			parts[i] = k + "=" + Redacted
		}
	}
	return strings.Join(parts, "&")
}
