// Package django recognises Django's objects in a target's memory and says
// what they are the way a Django developer wants to see them — a request
// as <WSGIRequest: GET '/path?q'>, a QuerySet with its model, whether it
// has been evaluated and its filters, a model instance with its pk, a lazy
// object as loaded or not — all read from memory: nothing is evaluated, no
// query runs.
package django

import (
	"fmt"
	"strings"

	"krait/internal/cpython"
	"krait/internal/render"
	"krait/internal/value"
)

const (
	httpRequest = "django.http.request.HttpRequest"
	querySet    = "django.db.models.query.QuerySet"
	model       = "django.db.models.base.Model"
	lazyObject  = "django.utils.functional.LazyObject"
)

// Describe is a cpython.Describer for Django's types.
func Describe(r cpython.Ref) (string, bool) {
	mod, _ := r.Type()
	if !strings.HasPrefix(mod, "django.") && !looksDjango(r) {
		return "", false
	}
	switch {
	case r.Inherits(httpRequest):
		return request(r), true
	case r.Inherits(querySet):
		return QuerySet(r), true
	case r.Inherits(lazyObject):
		return lazy(r), true
	case r.Inherits(model):
		return instance(r), true
	}
	return "", false
}

// looksDjango: user classes (models, querysets, requests subclasses) live
// outside django.*; only their MRO tells. Checking it costs one read of
// the type's MRO, cached per type.
func looksDjango(r cpython.Ref) bool {
	for _, c := range r.MRO() {
		if strings.HasPrefix(c, "django.") {
			return true
		}
	}
	return false
}

func str(r cpython.Ref, path ...string) string {
	v, ok := r.Path(path...)
	if !ok {
		return ""
	}
	s, _ := v.Str()
	return s
}

func request(r cpython.Ref) string {
	_, name := r.Type()
	method := str(r, "method")
	path := str(r, "path")
	if env, ok := r.Attr("environ"); ok {
		if q, ok := env.DictGet("QUERY_STRING"); ok {
			if qs, _ := q.Str(); qs != "" {
				path += "?" + qs
			}
		}
	}
	return fmt.Sprintf("<%s: %s %s>", name, method, pyStr(path))
}

func pyStr(s string) string {
	return render.Repr(&value.Value{Kind: value.Str, Runes: []rune(s), Len: len([]rune(s))}, render.Options{})
}

// modelLabel returns "app_label.ModelName" for a model class.
func modelLabel(cls cpython.Ref) string {
	if meta, ok := cls.ClassAttr("_meta"); ok {
		app, name := str(meta, "app_label"), str(meta, "object_name")
		if app != "" && name != "" {
			return app + "." + name
		}
	}
	return cls.ClassName()
}

// QuerySet renders a QuerySet from memory.
func QuerySet(r cpython.Ref) string {
	_, name := r.Type()
	var parts []string
	label := "?"
	if m, ok := r.Attr("model"); ok && m.IsType() {
		label = modelLabel(m)
	}
	if rc, ok := r.Attr("_result_cache"); ok && !rc.IsNone() {
		n, _ := rc.Len()
		parts = append(parts, fmt.Sprintf("evaluated, %d rows", n))
	} else {
		parts = append(parts, "not evaluated")
	}
	q, ok := r.Attr("_query") // Django 3.2+: query is a property over _query
	if !ok {
		q, ok = r.Attr("query")
	}
	if ok {
		if f := filters(q); f != "" {
			parts = append(parts, "filter: "+f)
		}
		if ob, ok := q.Attr("order_by"); ok {
			var keys []string
			for _, it := range ob.Items(8) {
				if s, ok := it.Str(); ok {
					keys = append(keys, s)
				}
			}
			if len(keys) > 0 {
				parts = append(parts, "order by "+strings.Join(keys, ", "))
			}
		}
		lo, _ := q.Attr("low_mark")
		hi, _ := q.Attr("high_mark")
		l, _ := lo.Int()
		if h, ok := hi.Int(); ok || l > 0 {
			if ok {
				parts = append(parts, fmt.Sprintf("[%d:%d]", l, h))
			} else {
				parts = append(parts, fmt.Sprintf("[%d:]", l))
			}
		}
	}
	return fmt.Sprintf("<%s %s: %s>", name, label, strings.Join(parts, "; "))
}

// lookupNames maps Django's lookup classes to their lookup names.
var lookupNames = map[string]string{
	"Exact": "=", "IExact": "__iexact=", "GreaterThan": ">", "GreaterThanOrEqual": ">=", "LessThan": "<",
	"LessThanOrEqual": "<=", "In": "__in=", "Contains": "__contains=", "IContains": "__icontains=",
	"StartsWith": "__startswith=", "IStartsWith": "__istartswith=", "EndsWith": "__endswith=",
	"IEndsWith": "__iendswith=", "Range": "__range=", "IsNull": "__isnull=", "Regex": "__regex=",
	"IRegex": "__iregex=", "RelatedExact": "=", "RelatedIn": "__in=", "RelatedIsNull": "__isnull=",
	"RelatedGreaterThan": ">", "RelatedLessThan": "<",
}

// filters renders a Query's WHERE tree: conditions joined by AND/OR, NOT
// marked, nested nodes in parentheses. Unknown nodes show their class.
func filters(q cpython.Ref) string {
	where, ok := q.Attr("where")
	if !ok {
		return ""
	}
	return whereNode(where, 0)
}

func whereNode(n cpython.Ref, depth int) string {
	if depth > 4 {
		return "…"
	}
	children, ok := n.Attr("children")
	if !ok {
		return ""
	}
	conn := str(n, "connector")
	if conn == "" {
		conn = "AND"
	}
	var parts []string
	for _, c := range children.Items(16) {
		if c.Inherits("django.db.models.sql.where.WhereNode") || c.Inherits("django.utils.tree.Node") {
			if s := whereNode(c, depth+1); s != "" {
				parts = append(parts, "("+s+")")
			}
			continue
		}
		parts = append(parts, lookup(c))
	}
	out := strings.Join(parts, " "+conn+" ")
	if neg, ok := n.Attr("negated"); ok {
		if v, _ := neg.Int(); v != 0 && out != "" {
			out = "NOT (" + out + ")"
		}
	}
	return out
}

func lookup(c cpython.Ref) string {
	_, cls := c.Type()
	op, ok := lookupNames[cls]
	if !ok {
		op = " " + cls + " "
	}
	field := "?"
	if lhs, ok := c.Attr("lhs"); ok {
		if t, ok := lhs.Attr("target"); ok {
			field = str(t, "name")
		} else if s := str(lhs, "name"); s != "" {
			field = s
		}
	}
	rhs := "?"
	if v, ok := c.Attr("rhs"); ok {
		rhs = render.Repr(v.Value(cpython.Limits{Items: 8, Chars: 80, Depth: 1}), render.Options{MaxWidth: 80})
	}
	return field + op + rhs
}

func instance(r cpython.Ref) string {
	_, name := r.Type()
	pk := "?"
	if meta, ok := r.TypeRef().ClassAttr("_meta"); ok {
		if f, ok := meta.Attr("pk"); ok {
			if attname := str(f, "attname"); attname != "" {
				if v, ok := r.Attr(attname); ok {
					pk = render.Repr(v.Value(cpython.Limits{Items: 4, Chars: 80, Depth: 1}), render.Options{MaxWidth: 80})
				}
			}
		}
	}
	return fmt.Sprintf("<%s pk=%s at 0x%x>", name, pk, r.Addr)
}

func lazy(r cpython.Ref) string {
	_, name := r.Type()
	w, ok := r.Attr("_wrapped")
	if !ok {
		return fmt.Sprintf("<%s: ?>", name)
	}
	mod, cls := w.Type()
	if mod == "builtins" && cls == "object" {
		return fmt.Sprintf("<%s: not loaded>", name)
	}
	return fmt.Sprintf("<%s: loaded %s>", name, render.Repr(w.Value(cpython.Limits{Items: 4, Chars: 80, Depth: 1}), render.Options{MaxWidth: 120}))
}
