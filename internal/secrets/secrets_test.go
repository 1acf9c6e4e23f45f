package secrets

import "testing"

func TestIsSecret(t *testing.T) {
	for _, name := range []string{
		"SECRET_KEY", "secret_key", "PASSWORD", "password", "db_password", "DATABASE_PASSWORD", "AWS_SECRET_ACCESS_KEY",
		"AWS_ACCESS_KEY_ID", "api_key", "apiKey", "ApiKey", "STRIPE_KEY", "GITHUB_TOKEN", "csrfmiddlewaretoken",
		"HTTP_X_CSRFTOKEN", "HTTP_COOKIE", "http_cookie", "HTTP_AUTHORIZATION", "HTTP_PROXY_AUTHORIZATION",
		"SENTRY_DSN", "sentry_dsn", "RAVEN_DSN", "DATABASE_URL", "EMAIL_HOST_PASSWORD", "access_token",
		"refresh_token", "PRIVATE_KEY", "private_key_pem", "COOKIES", "sessionid", "ssh_passphrase", "credentials",
		"SIGNING_KEY", "secretkey", "client_secret", "X-Api-Key", "auth_token", "DJANGO_SECRET_KEY",
	} {
		if !IsSecret(name) {
			t.Errorf("IsSecret(%q) = false, want true", name)
		}
	}
	for _, name := range []string{
		"key", "keys", "KEY", "cache_key", "CACHE_KEY", "sort_key", "primary_key", "KEY_PREFIX", "KEY_FUNCTION",
		"SESSION_COOKIE_NAME", "CSRF_COOKIE_NAME", "SESSION_COOKIE_AGE", "CSRF_COOKIE_HTTPONLY", "AUTH_USER_MODEL",
		"AUTH_PASSWORD_VALIDATORS", "PASSWORD_HASHERS", "PASSWORD_RESET_TIMEOUT", "monkey", "REQUEST_METHOD",
		"PATH_INFO", "QUERY_STRING", "DEBUG", "ALLOWED_HOSTS", "name", "user", "HTTP_HOST", "HTTP_USER_AGENT",
		"REMOTE_ADDR", "sql", "params", "", "_", "CSRF_HEADER_NAME", "DEFAULT_AUTO_FIELD",
	} {
		if IsSecret(name) {
			t.Errorf("IsSecret(%q) = true, want false", name)
		}
	}
}

func TestQuery(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"page=2":                         "page=2",
		"token=abc&page=2":               "token=<redacted>&page=2",
		"api%5Fkey=x":                    "api%5Fkey=<redacted>",
		"password":                       "password",
		"a=1&access_token=zz&b=&secret=": "a=1&access_token=<redacted>&b=&secret=<redacted>",
	} {
		if got := Query(in); got != want {
			t.Errorf("Query(%q) = %q, want %q", in, got, want)
		}
	}
}
