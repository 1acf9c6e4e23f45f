package cache

import (
	"reflect"
	"testing"
)

func TestTables(t *testing.T) {
	for _, c := range []struct {
		sql         string
		read, write []string
	}{
		{`SELECT COUNT("shop_order"."id") AS "count", SUM("shop_order"."total") AS "revenue" FROM "shop_order"`, []string{"shop_order"}, nil},
		{`SELECT "shop_order"."id" FROM "shop_order" INNER JOIN "shop_customer" ON ("shop_order"."customer_id" = "shop_customer"."id") LEFT OUTER JOIN public.shop_item i ON i.id = 1`, []string{"shop_order", "shop_customer", "shop_item"}, nil},
		{`SELECT a.x FROM Foo a, "public"."Bar" AS b WHERE a.id = b.id`, []string{"foo", "Bar"}, nil},
		{`SELECT EXTRACT(year FROM "shop_order"."created"), SUBSTRING(name FROM 2) FROM shop_order`, []string{"shop_order"}, nil},
		{`SELECT * FROM t WHERE id IN (SELECT t_id FROM u WHERE x = 'FROM v')`, []string{"t", "u"}, nil},
		{`SELECT * FROM (SELECT * FROM inner_t) sub JOIN other ON true`, []string{"inner_t", "other"}, nil},
		{`SELECT * FROM t FOR UPDATE`, []string{"t"}, nil},
		{`UPDATE "shop_product" SET "price" = 3 WHERE "shop_product"."id" = 1`, nil, []string{"shop_product"}},
		{`UPDATE shop_product SET price = o.p FROM other o WHERE o.id = shop_product.id`, []string{"other"}, []string{"shop_product"}},
		{`INSERT INTO "shop_order" ("number", "total") VALUES ('x', 1) RETURNING "shop_order"."id"`, nil, []string{"shop_order"}},
		{`INSERT INTO archive SELECT * FROM shop_order ON CONFLICT (id) DO UPDATE SET x = 1`, []string{"shop_order"}, []string{"archive"}},
		{`DELETE FROM "shop_order" WHERE "shop_order"."id" IN (SELECT id FROM doomed)`, []string{"doomed"}, []string{"shop_order"}},
		{`TRUNCATE TABLE a, "B", public.c CASCADE`, nil, []string{"a", "B", "c"}},
		{`TRUNCATE a`, nil, []string{"a"}},
		{"SELECT `x`.`y` FROM `mysql_t`", []string{"mysql_t"}, nil},
		{`-- comment FROM nothing
		/* FROM nothing */ SELECT 1`, nil, nil},
		{`WITH x AS (SELECT * FROM src) UPDATE dst SET a = 1 FROM x`, []string{"src", "x"}, []string{"dst"}},
		{`SELECT pg_sleep(1)`, nil, nil},
		{`SAVEPOINT "s1"`, nil, nil},
	} {
		r, w := Tables(c.sql)
		if !reflect.DeepEqual(r, c.read) || !reflect.DeepEqual(w, c.write) {
			t.Errorf("Tables(%q) = %q, %q; want %q, %q", c.sql, r, w, c.read, c.write)
		}
	}
}

func TestFoldKey(t *testing.T) {
	for in, want := range map[string]string{
		"product:17:price": "product:<n>:price",
		"order-summary":    "order-summary",
		"template.cache.sidebar.d41d8cd98f00b204e9800998ecf8427e": "template.cache.sidebar.<hash>",
		"user:0b5d1b9e-2d7c-4f5e-9a7c-5f2b3c4d5e6f":               "user:<uuid>",
		"deadbeefdeadbeefdead":                                    "deadbeefdeadbeefdead",
	} {
		if got := FoldKey(in); got != want {
			t.Errorf("FoldKey(%q) = %q, want %q", in, got, want)
		}
	}
}
