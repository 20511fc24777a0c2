package wire

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// reprDigestToken is the algorithm token the Python subscriber accepts:
// "sha-512" with a hyphen, although the lonelypsp docstring says "sha512".
const reprDigestToken = "sha-512"

// ReprDigest formats the Repr-Digest header of a RECEIVE request:
// "sha-512=" and the standard, padded base64 of sum, without the colons of
// RFC 9530 because the Python subscriber does not strip them.
func ReprDigest(sum [64]byte) string {
	return reprDigestToken + "=" + base64.StdEncoding.EncodeToString(sum[:])
}

// ParseReprDigest extracts the SHA-512 from a Repr-Digest header the way the
// Python subscriber does, so that a Go subscriber accepts what it accepts: the
// header is split on ',', each item at its first '='; items without '=' or
// with another token are skipped and the last "sha-512" item wins. The value
// is decoded like Python's lenient base64.b64decode(value + "=="): characters
// outside the base64 alphabet are skipped, padding may be missing, and
// decoding stops at the first complete padding. Unlike Python, whitespace
// around the token is tolerated (HTTP lists are usually written ", "), and the
// result must be exactly 64 bytes.
func ParseReprDigest(h string) ([64]byte, error) {
	var sum [64]byte
	value, found := "", false
	for item := range strings.SplitSeq(h, ",") {
		token, v, ok := strings.Cut(item, "=")
		if !ok || strings.Trim(token, " \t") != reprDigestToken {
			continue
		}
		value, found = v, true
	}
	if !found {
		return sum, fmt.Errorf("repr-digest %q: no %s entry: %w", abbreviateString(h), reprDigestToken, ErrReprDigest)
	}
	decoded, err := pythonB64Decode(value + "==")
	if err != nil {
		return sum, fmt.Errorf("repr-digest %q: %s value: %w", abbreviateString(h), reprDigestToken, err)
	}
	if len(decoded) != len(sum) {
		return sum, fmt.Errorf("repr-digest %q: %s value decodes to %d bytes, want %d: %w",
			abbreviateString(h), reprDigestToken, len(decoded), len(sum), ErrReprDigest)
	}
	copy(sum[:], decoded)
	return sum, nil
}

func abbreviateString(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// pythonB64Decode mirrors CPython's binascii.a2b_base64 in its default
// (non-strict) mode, which is what base64.b64decode uses: non-alphabet
// characters are ignored, '=' only counts once two data characters of a
// quantum are in, a completed padding ends decoding, leftover bits are
// dropped, and a dangling partial quantum is an error. Non-ASCII input is
// rejected, as Python refuses to encode such a str to ASCII first.
func pythonB64Decode(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)*3/4)
	var quad, pads int
	var left byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return nil, fmt.Errorf("non-ASCII byte 0x%02x at offset %d: %w", c, i, ErrReprDigest)
		}
		if c == '=' {
			if quad >= 2 {
				pads++
				if quad+pads >= 4 {
					return out, nil
				}
			}
			continue
		}
		v := b64Value(c)
		if v < 0 {
			continue
		}
		pads = 0
		switch quad {
		case 0:
			left = byte(v)
			quad = 1
		case 1:
			out = append(out, left<<2|byte(v)>>4)
			left = byte(v) & 0x0f
			quad = 2
		case 2:
			out = append(out, left<<4|byte(v)>>2)
			left = byte(v) & 0x03
			quad = 3
		case 3:
			out = append(out, left<<6|byte(v))
			quad = 0
		}
	}
	if quad == 1 {
		return nil, fmt.Errorf("base64 has one data character too many for a whole quantum: %w", ErrReprDigest)
	}
	if quad != 0 {
		return nil, fmt.Errorf("base64 has incorrect padding: %w", ErrReprDigest)
	}
	return out, nil
}

func b64Value(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+':
		return 62
	case c == '/':
		return 63
	}
	return -1
}
