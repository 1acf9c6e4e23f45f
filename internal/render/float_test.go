package render

import (
	"math"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"

	"krait/internal/value"
)

func negZero() float64     { return math.Copysign(0, -1) }
func inf(sign int) float64 { return math.Inf(sign) }
func nan() float64         { return math.NaN() }

// TestFloatGolden checks floatRepr against the reprs CPython printed for
// the doubles of floatGolden.
func TestFloatGolden(t *testing.T) {
	for _, g := range floatGolden {
		f := math.Float64frombits(g.bits)
		if got := floatRepr(f); got != g.want {
			t.Errorf("repr(%#016x) = %q, want %q", g.bits, got, g.want)
		}
	}
}

// moreFloats returns n doubles drawn afresh (but reproducibly) from
// several distributions: any bit pattern, subnormals, [0, 1), integers
// around 2**53, short decimals and neighbours of powers of ten.
func moreFloats(n int) []float64 {
	rng := rand.New(rand.NewPCG(1, 2))
	fs := make([]float64, 0, n)
	for len(fs) < n {
		var f float64
		switch rng.IntN(6) {
		case 0:
			f = math.Float64frombits(rng.Uint64())
		case 1:
			f = math.Float64frombits(rng.Uint64() & (1<<52 - 1))
		case 2:
			f = rng.Float64()
		case 3:
			f = float64(rng.Int64N(1<<55) - 1<<54)
		case 4:
			f = float64(rng.Int64N(1000000)) / math.Pow10(rng.IntN(12))
		case 5:
			p := math.Pow10(rng.IntN(60) - 30)
			f = math.Nextafter(p, math.Inf(2*rng.IntN(2)-1))
		}
		if rng.IntN(2) == 0 {
			f = -f
		}
		fs = append(fs, f)
	}
	return fs
}

// TestFloatReprAgainstPython compares floatRepr with repr() of every
// interpreter found, on the golden doubles (whose wants must also hold)
// and on more drawn ones.
func TestFloatReprAgainstPython(t *testing.T) {
	var fs []float64
	for _, g := range floatGolden {
		fs = append(fs, math.Float64frombits(g.bits))
	}
	fs = append(fs, moreFloats(20000)...)
	exprs := make([]string, len(fs))
	for i, f := range fs {
		exprs[i] = pyFloat(f)
	}
	for _, p := range pythons(t) {
		t.Run(p.String(), func(t *testing.T) {
			t.Parallel()
			bad := 0
			for i, want := range p.reprs(t, exprs) {
				if got := floatRepr(fs[i]); got != want && bad < 20 {
					bad++
					t.Errorf("repr(%#016x): Python %q, floatRepr %q", math.Float64bits(fs[i]), want, got)
				}
				if i < len(floatGolden) && floatGolden[i].want != want && bad < 20 {
					bad++
					t.Errorf("golden %#016x: Python %q, table %q", floatGolden[i].bits, want, floatGolden[i].want)
				}
			}
		})
	}
}

// pyFloatSyntax is the shape of a finite float repr.
var pyFloatSyntax = regexp.MustCompile(`^-?(([1-9][0-9]{0,15}|0)\.[0-9]+|[1-9](\.[0-9]*[1-9])?e[-+][0-9]{2,3})$`)

func FuzzFloatRepr(f *testing.F) {
	for _, x := range []float64{0, 1, 0.1, 1e16, 1e-5, 1e-4, 5e-324, math.MaxFloat64, 1234567890123456} {
		f.Add(math.Float64bits(x))
	}
	f.Fuzz(func(t *testing.T, bits uint64) {
		x := math.Float64frombits(bits)
		s := floatRepr(x)
		if Repr(&value.Value{Kind: value.Float, Float: x}, Options{}) != s {
			t.Fatalf("Repr and floatRepr differ on %#x", bits)
		}
		switch {
		case math.IsNaN(x):
			if s != "nan" {
				t.Fatalf("NaN %#x gave %q", bits, s)
			}
			return
		case math.IsInf(x, 0):
			if s != "inf" && s != "-inf" {
				t.Fatalf("Inf %#x gave %q", bits, s)
			}
		case !pyFloatSyntax.MatchString(s):
			t.Fatalf("%#x gave %q, not a Python float repr", bits, s)
		}
		y, err := strconv.ParseFloat(s, 64)
		if err != nil {
			t.Fatalf("%#x gave %q: %v", bits, s, err)
		}
		if math.Float64bits(y) != bits {
			t.Fatalf("%#x gave %q, which reads back as %#x", bits, s, math.Float64bits(y))
		}
		// Shortest: as many significant digits as Go's shortest form.
		short := strconv.FormatFloat(math.Abs(x), 'e', -1, 64)
		if sig(s) != sig(short) {
			t.Fatalf("%#x gave %q, Go's shortest digits are %q", bits, s, short)
		}
	})
}

// sig returns the significant digits of a decimal float string.
func sig(s string) string {
	var d []byte
	for i := 0; i < len(s) && s[i] != 'e'; i++ {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, s[i])
		}
	}
	for len(d) > 1 && d[0] == '0' {
		d = d[1:]
	}
	for len(d) > 1 && d[len(d)-1] == '0' {
		d = d[:len(d)-1]
	}
	return string(d)
}
