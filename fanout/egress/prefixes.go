package egress

import (
	"fmt"
	"net/netip"
	"strings"
)

// Prefixes is a list of address ranges, usable as a repeatable flag
// (flag.Value) whose values are comma-separated CIDRs or single addresses.
type Prefixes []netip.Prefix

// String lists the ranges comma-separated.
func (p *Prefixes) String() string {
	if p == nil {
		return ""
	}
	parts := make([]string, 0, len(*p))
	for _, pf := range *p {
		parts = append(parts, pf.String())
	}
	return strings.Join(parts, ",")
}

// Set adds the comma-separated ranges of v. A single address is a range
// of one (/32 or /128).
func (p *Prefixes) Set(v string) error {
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if pf, err := netip.ParsePrefix(item); err == nil {
			*p = append(*p, pf.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil || a.Zone() != "" {
			return fmt.Errorf("%q: want an address range such as 10.0.0.0/8 or fd00::/8, or one address", item)
		}
		*p = append(*p, netip.PrefixFrom(a, a.BitLen()))
	}
	return nil
}
