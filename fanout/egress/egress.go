// Package egress decides which addresses the node may connect to when it
// calls subscribers (RECEIVE deliveries and MISSED notices). Subscriber
// URLs come from clients, so without a policy a client could make the node
// POST to cloud metadata endpoints, to its own API or Raft listener, or to
// anything else reachable from the node (server-side request forgery).
//
// The decisive check runs when a connection is made, on every address a
// host name resolved to and on the address actually dialled, so a name
// that resolves to a harmless address at subscribe time and to a denied
// one later (DNS rebinding) is still refused. CheckURL repeats the part
// that needs no resolution at subscribe time, so that a client naming a
// denied address literally gets a clear refusal instead of silent failed
// deliveries.
//
// Precedence, first match decides:
//  1. the node's own API and Raft listeners: always refused (the node's
//     internal websocket rows, recognised by Config.Exempt, aside);
//  2. the longest --subscriber-allow-cidr or --subscriber-deny-cidr prefix
//     containing the address; a tie goes to deny;
//  3. the defaults: link-local, unspecified, multicast and broadcast
//     addresses refused; everything else (loopback, private, public)
//     allowed.
//
// Independently, when the node sends a token to subscribers, a plain
// http:// URL must reach a loopback address unless AllowTokenOverHTTP: the
// token would otherwise cross the network in clear.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrDenied is wrapped by every refusal of the policy.
var ErrDenied = errors.New("subscriber address not allowed")

// denial is a refusal with a message a person understands.
type denial struct{ msg string }

func (d *denial) Error() string        { return d.msg }
func (d *denial) Is(target error) bool { return target == ErrDenied }

func denied(format string, args ...any) error {
	return &denial{msg: fmt.Sprintf(format, args...)}
}

// Config describes a policy. The zero value applies the defaults with no
// own listeners.
type Config struct {
	// Allow re-opens addresses the defaults refuse (--subscriber-allow-cidr).
	Allow []netip.Prefix
	// Deny refuses addresses the defaults allow (--subscriber-deny-cidr).
	Deny []netip.Prefix
	// OwnListeners are the HOST:PORT addresses the node's API and Raft
	// transport listen on (or are reached at). An empty or unspecified
	// host is a wildcard bind: the port on loopback or on any address of
	// this machine's interfaces. A host name is resolved once, by New.
	OwnListeners []string
	// Exempt recognises the node's own internal URLs (its websocket rows),
	// which are the only URLs allowed to reach its own listeners. They
	// skip the policy altogether: they name this node's own API.
	Exempt func(rawURL string) bool
	// TokenAuth is set when the node authenticates to subscribers with a
	// token, which http:// would send in clear.
	TokenAuth bool
	// ClusterRow recognises the internal websocket rows of any node of
	// the cluster. Deliveries to them go over the cluster's own network,
	// as forwarded writes do, so the token-over-http rule does not apply
	// to them (the address rules do).
	ClusterRow func(u *url.URL) bool
	// AllowTokenOverHTTP lets a token travel over http:// to non-loopback
	// hosts (--allow-token-over-http).
	AllowTokenOverHTTP bool
	// LookupIP resolves host names; nil uses net.DefaultResolver. Tests
	// inject names that resolve to chosen addresses.
	LookupIP func(ctx context.Context, host string) ([]netip.Addr, error)
	// InterfaceAddrs lists this machine's addresses, for wildcard
	// listeners; nil uses net.InterfaceAddrs.
	InterfaceAddrs func() ([]netip.Addr, error)
}

// Policy is an immutable, concurrency-safe subscriber address policy.
type Policy struct {
	cfg       Config
	exact     map[netip.AddrPort]bool // own listeners bound to one address
	wildPorts map[uint16]bool         // own listeners bound to every address
	dialer    net.Dialer
}

// New builds a policy. It resolves own listeners given by host name, so
// it may block for a lookup bounded by ctx.
func New(ctx context.Context, cfg Config) (*Policy, error) {
	if cfg.LookupIP == nil {
		cfg.LookupIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	if cfg.InterfaceAddrs == nil {
		cfg.InterfaceAddrs = interfaceAddrs
	}
	cfg.Allow = canonicalPrefixes(cfg.Allow)
	cfg.Deny = canonicalPrefixes(cfg.Deny)
	p := &Policy{cfg: cfg, exact: map[netip.AddrPort]bool{}, wildPorts: map[uint16]bool{}}
	for _, l := range cfg.OwnListeners {
		if err := p.addListener(ctx, l); err != nil {
			return nil, err
		}
	}
	p.dialer = net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, ControlContext: p.control}
	return p, nil
}

func (p *Policy) addListener(ctx context.Context, hostport string) error {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("own listener %q: %w", hostport, err)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return fmt.Errorf("own listener %q: %w", hostport, err)
	}
	if host == "" {
		p.wildPorts[port] = true
		return nil
	}
	addrs := []netip.Addr{}
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = append(addrs, a)
	} else {
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if addrs, err = p.cfg.LookupIP(lctx, host); err != nil {
			return fmt.Errorf("own listener %q: resolve: %w", hostport, err)
		}
	}
	for _, a := range addrs {
		a = canonical(a)
		if a.IsUnspecified() {
			p.wildPorts[port] = true
			continue
		}
		p.exact[netip.AddrPortFrom(a, port)] = true
	}
	return nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(n), nil
}

func interfaceAddrs() ([]netip.Addr, error) {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("list interface addresses: %w", err)
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, canonical(ip))
			}
		}
	}
	return out, nil
}

// canonical drops the zone and unmaps IPv4-mapped IPv6 addresses, so that
// ::ffff:169.254.169.254 is judged as 169.254.169.254.
func canonical(a netip.Addr) netip.Addr { return a.WithZone("").Unmap() }

// canonicalPrefixes copies ps with IPv4-mapped prefixes written as IPv4,
// as canonical writes the addresses they are matched against.
func canonicalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out
}

// Exempt reports whether rawURL is one of the node's own internal URLs.
func (p *Policy) Exempt(rawURL string) bool {
	return p != nil && p.cfg.Exempt != nil && p.cfg.Exempt(rawURL)
}

// CheckURL is the subscribe-time check: it refuses a URL whose host is a
// literal address the policy denies, and a token-carrying http:// URL to
// a host that is not loopback. Host names pass; they are checked when a
// connection is made. A URL that does not parse passes too: it is not a
// question of policy, and no delivery to it can be made. A nil policy
// allows everything, so that a caller holding it in an interface cannot
// crash on an unset one.
func (p *Policy) CheckURL(rawURL string) error {
	if p == nil || p.Exempt(rawURL) {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return nil
	}
	host := u.Hostname()
	addr, lit := parseHost(host)
	if p.plainToken(u.Scheme) && !(isLoopbackName(host) || (lit && addr.IsLoopback())) {
		return fmt.Errorf("subscriber URL %s: %w", shorten(rawURL), denied(
			"http:// to a host that is not loopback would send the subscribers' token in clear: use https, or start the node with --allow-token-over-http"))
	}
	if !lit {
		return nil
	}
	port, err := urlPort(u)
	if err != nil {
		return nil
	}
	if err := p.checkAddr(netip.AddrPortFrom(addr, port)); err != nil {
		return fmt.Errorf("subscriber URL %s: %w", shorten(rawURL), err)
	}
	return nil
}

func (p *Policy) plainToken(scheme string) bool {
	return p.cfg.TokenAuth && !p.cfg.AllowTokenOverHTTP && !strings.EqualFold(scheme, "https")
}

func parseHost(host string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return canonical(a), true
}

func isLoopbackName(host string) bool {
	return strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
}

// urlPort is the URL's port, or its scheme's default.
func urlPort(u *url.URL) (uint16, error) {
	if s := u.Port(); s != "" {
		return parsePort(s)
	}
	if strings.EqualFold(u.Scheme, "https") {
		return 443, nil
	}
	return 80, nil
}

// shorten keeps error messages readable: a URL may be 64 KiB.
func shorten(s string) string {
	const max = 200
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}

// checkAddr applies the precedence of the package comment to one address.
func (p *Policy) checkAddr(ap netip.AddrPort) error {
	a := canonical(ap.Addr())
	ap = netip.AddrPortFrom(a, ap.Port())
	if p.ownListener(ap) {
		return denied("%s is this node's own API or Raft listener, which is never a subscriber", ap)
	}
	if deny, ok := p.operatorRule(a); ok {
		if deny.IsValid() {
			return denied("%s is in --subscriber-deny-cidr %s", a, deny)
		}
		return nil
	}
	if kind := defaultDenied(a); kind != "" {
		return denied("%s address %s is not allowed (--subscriber-allow-cidr can allow it)", kind, a)
	}
	return nil
}

// operatorRule finds the longest operator prefix containing a: ok is
// false when none does; deny is that prefix when it is a deny rule, and
// invalid when it is an allow rule. Equal lengths go to deny.
func (p *Policy) operatorRule(a netip.Addr) (deny netip.Prefix, ok bool) {
	best := func(ps []netip.Prefix) (netip.Prefix, int) {
		var out netip.Prefix
		bits := -1
		for _, pf := range ps {
			if pf.Contains(a) && pf.Bits() > bits {
				out, bits = pf, pf.Bits()
			}
		}
		return out, bits
	}
	_, ab := best(p.cfg.Allow)
	dn, db := best(p.cfg.Deny)
	switch {
	case ab < 0 && db < 0:
		return netip.Prefix{}, false
	case db >= ab:
		return dn, true
	default:
		return netip.Prefix{}, true
	}
}

var (
	broadcast4   = netip.MustParseAddr("255.255.255.255")
	thisNetwork4 = netip.MustParsePrefix("0.0.0.0/8")
)

// defaultDenied names the category of an address the defaults refuse, or
// "" when they allow it.
func defaultDenied(a netip.Addr) string {
	switch {
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsUnspecified() || thisNetwork4.Contains(a):
		// Linux connects 0.0.0.0 to the local host: a way around the own
		// listener check.
		return "unspecified"
	case a.IsMulticast():
		return "multicast"
	case a == broadcast4:
		return "broadcast"
	}
	return ""
}

func (p *Policy) ownListener(ap netip.AddrPort) bool {
	if p.exact[ap] {
		return true
	}
	if !p.wildPorts[ap.Port()] {
		return false
	}
	a := ap.Addr()
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	local, err := p.cfg.InterfaceAddrs()
	if err != nil {
		// Unknown: refusing is the safe answer for the node's own port.
		return true
	}
	return slices.Contains(local, a)
}

// dialMark tells DialContext what kind of request a connection is for.
type dialMark struct{ tls, clusterRow bool }

type markKey struct{}

// Context marks ctx with the URL a request goes to, so that DialContext
// applies the token-over-http rule: only an https request may reach a
// non-loopback address when the node sends a token. An unmarked dial is
// treated as plain http, so that a forgotten mark fails closed.
func (p *Policy) Context(ctx context.Context, u *url.URL) context.Context {
	return context.WithValue(ctx, markKey{}, dialMark{
		tls:        strings.EqualFold(u.Scheme, "https"),
		clusterRow: p.cfg.ClusterRow != nil && p.cfg.ClusterRow(u),
	})
}

// DialContext connects like net.Dialer.DialContext, but only to allowed
// addresses: every address a host name resolves to is checked (one denied
// address refuses the dial), and the address actually dialled is checked
// again just before connecting.
func (p *Policy) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", address, err)
	}
	addrs := []netip.Addr{}
	if a, ok := parseHost(host); ok {
		addrs = append(addrs, a)
	} else {
		if addrs, err = p.cfg.LookupIP(ctx, host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", host)
		}
	}
	mark, _ := ctx.Value(markKey{}).(dialMark)
	for _, a := range addrs {
		if err := p.checkDial(netip.AddrPortFrom(canonical(a), port), mark); err != nil {
			return nil, fmt.Errorf("connect to %s: %w", address, err)
		}
	}
	var errs []error
	for _, a := range addrs {
		c, err := p.dialer.DialContext(ctx, network, netip.AddrPortFrom(a, port).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

func (p *Policy) checkDial(ap netip.AddrPort, mark dialMark) error {
	ap = netip.AddrPortFrom(canonical(ap.Addr()), ap.Port())
	if p.cfg.TokenAuth && !p.cfg.AllowTokenOverHTTP && !mark.tls && !mark.clusterRow && !ap.Addr().IsLoopback() {
		return denied("%s is not loopback: http:// would send the subscribers' token in clear (use https, or --allow-token-over-http)", ap.Addr())
	}
	return p.checkAddr(ap)
}

// control runs on the address the socket is about to connect to.
func (p *Policy) control(ctx context.Context, _, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", address, denied("address not understood"))
	}
	mark, _ := ctx.Value(markKey{}).(dialMark)
	return p.checkDial(ap, mark)
}
