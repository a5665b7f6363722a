package guardian

import (
	"bytes"
	"errors"
	"fmt"
)

// Windows, Java and BouncyCastle may write PKCS#12 files in BER: indefinite
// lengths and OCTET STRINGs split into constructed chunks. encoding/asn1
// (and so go-pkcs12) reads only DER, so berToDER rewrites a BER encoding into
// the DER encoding of the same values.

const maxBERDepth = 64

var errBER = errors.New("malformed ASN.1")

// berToDER converts one complete BER element. Trailing bytes are an error.
func berToDER(in []byte) ([]byte, error) {
	out, rest, err := berElement(in, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the end", errBER, len(rest))
	}
	return out, nil
}

// berElement converts the element at the start of in and returns the rest.
func berElement(in []byte, depth int) (der, rest []byte, err error) {
	if depth > maxBERDepth {
		return nil, nil, fmt.Errorf("%w: nested too deeply", errBER)
	}
	if len(in) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated", errBER)
	}
	// Identifier octets: keep them as they are (tag numbers above 30 use
	// the multi-byte form, which BER and DER share).
	idLen := 1
	if in[0]&0x1f == 0x1f {
		for idLen < len(in) && in[idLen]&0x80 != 0 {
			idLen++
		}
		idLen++
		if idLen > 6 || idLen >= len(in) {
			return nil, nil, fmt.Errorf("%w: bad tag", errBER)
		}
	}
	ident := in[:idLen]
	constructed := in[0]&0x20 != 0
	p := in[idLen:]
	if len(p) == 0 {
		return nil, nil, fmt.Errorf("%w: truncated", errBER)
	}
	lb := p[0]
	p = p[1:]
	var content []byte
	indefinite := false
	switch {
	case lb < 0x80:
		if int(lb) > len(p) {
			return nil, nil, fmt.Errorf("%w: truncated", errBER)
		}
		content, rest = p[:lb], p[lb:]
	case lb == 0x80:
		if !constructed {
			return nil, nil, fmt.Errorf("%w: indefinite length on a primitive element", errBER)
		}
		indefinite = true
	default:
		n := int(lb & 0x7f)
		if n > 4 || n > len(p) {
			return nil, nil, fmt.Errorf("%w: bad length", errBER)
		}
		l := 0
		for _, b := range p[:n] {
			l = l<<8 | int(b)
		}
		p = p[n:]
		if l > len(p) {
			return nil, nil, fmt.Errorf("%w: truncated", errBER)
		}
		content, rest = p[:l], p[l:]
	}
	if !constructed {
		return appendTLV(nil, ident, content), rest, nil
	}
	// Constructed: convert the children.
	var children [][]byte
	body := content
	if indefinite {
		body = p
	}
	for {
		if indefinite {
			if len(body) >= 2 && body[0] == 0 && body[1] == 0 {
				rest = body[2:]
				break
			}
			if len(body) == 0 {
				return nil, nil, fmt.Errorf("%w: missing end-of-contents", errBER)
			}
		} else if len(body) == 0 {
			break
		}
		child, r, err := berElement(body, depth+1)
		if err != nil {
			return nil, nil, err
		}
		children = append(children, child)
		body = r
	}
	// A universal string type sent as constructed chunks becomes one
	// primitive string in DER.
	if in[0]&0xc0 == 0 && isStringTag(in[0]&0x1f) {
		var joined []byte
		for _, c := range children {
			if c[0]&0x1f != in[0]&0x1f {
				return nil, nil, fmt.Errorf("%w: mixed chunks in a constructed string", errBER)
			}
			_, v, err := splitTLV(c)
			if err != nil {
				return nil, nil, err
			}
			joined = append(joined, v...)
		}
		return appendTLV(nil, []byte{in[0] &^ 0x20}, joined), rest, nil
	}
	return appendTLV(nil, ident, bytes.Join(children, nil)), rest, nil
}

func isStringTag(t byte) bool {
	switch t {
	case 4, 12, 19, 20, 22, 26, 28, 30: // OCTET STRING and the character strings
		return true
	}
	return false
}

// splitTLV returns the identifier and content of a DER element.
func splitTLV(der []byte) (ident, content []byte, err error) {
	if len(der) < 2 {
		return nil, nil, errBER
	}
	i := 1
	if der[0]&0x1f == 0x1f {
		for i < len(der) && der[i]&0x80 != 0 {
			i++
		}
		i++
	}
	if i >= len(der) {
		return nil, nil, errBER
	}
	lb := der[i]
	i++
	l := int(lb)
	if lb >= 0x80 {
		n := int(lb & 0x7f)
		if n == 0 || n > 4 || i+n > len(der) {
			return nil, nil, errBER
		}
		l = 0
		for _, b := range der[i : i+n] {
			l = l<<8 | int(b)
		}
		i += n
	}
	if i+l != len(der) {
		return nil, nil, errBER
	}
	return der[:i-1-lenOfLen(lb)], der[i:], nil
}

func lenOfLen(lb byte) int {
	if lb < 0x80 {
		return 0
	}
	return int(lb & 0x7f)
}

// appendTLV appends a DER element with a minimal definite length.
func appendTLV(dst, ident, content []byte) []byte {
	dst = append(dst, ident...)
	l := len(content)
	switch {
	case l < 0x80:
		dst = append(dst, byte(l))
	default:
		var lb []byte
		for v := l; v > 0; v >>= 8 {
			lb = append([]byte{byte(v)}, lb...)
		}
		dst = append(dst, 0x80|byte(len(lb)))
		dst = append(dst, lb...)
	}
	return append(dst, content...)
}
