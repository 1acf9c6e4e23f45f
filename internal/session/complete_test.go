package session

import (
	"fmt"
	"testing"
)

// TestParseCompletion: what the text before the cursor asks to complete.
func TestParseCompletion(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"", "name [] \"\" 0"},
		{"lab", "name [] \"lab\" 0"},
		{"x + lab", "name [] \"lab\" 4"},
		{"f(lab", "name [] \"lab\" 2"},
		{"x = ", "name [] \"\" 4"},
		{"order.", "attr [order] \"\" 6"},
		{"order.to", "attr [order] \"to\" 6"},
		{"not request.META['HO", "key [request [a META]] \"HO\" 18"},
		{`env["`, "key [env] \"\" 5"},
		{"data.items[0].sk", "attr [data [a items] [i 0]] \"sk\" 14"},
		{"d['a'].b.", "attr [d [i a] [a b]] \"\" 9"},
		{"x ", ""},
		{"f().a", ""},
		{"(x).a", ""},
		{"'s'.", ""},
		{"1.", ""},
		{"x['", "key [x] \"\" 3"},
		{"x[y].", ""},
		{"$1.", "attr [$1] \"\" 3"},
		{"$$.up", "attr [$$] \"up\" 3"},
	} {
		got := ""
		if ctx, ok := parseCompletion(c.text); ok {
			got = fmt.Sprintf("%s %v %q %d", ctx.what, ctx.chain, ctx.prefix, ctx.start)
		}
		if got != c.want {
			t.Errorf("%q: %s, want %s", c.text, got, c.want)
		}
	}
}
