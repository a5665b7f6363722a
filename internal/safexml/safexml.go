// Package safexml bounds XML read from outside before it is decoded: its
// size, nesting depth and element count, and it refuses DTDs (and so
// entities), which encoding/xml would otherwise pass over silently.
package safexml

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
)

// Limits bound a document.
type Limits struct {
	MaxBytes    int
	MaxDepth    int
	MaxElements int
}

// Check reads the whole document once and reports the first limit it
// breaks, a DTD, or malformed XML.
func Check(data []byte, l Limits) error {
	if len(data) > l.MaxBytes {
		return fmt.Errorf("document is %d bytes, more than the %d allowed", len(data), l.MaxBytes)
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = true
	depth, elements, roots := 0, 0, 0
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("malformed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			elements++
			if depth == 1 {
				roots++
			}
			if roots > 1 {
				return errors.New("malformed XML: more than one root element")
			}
			if depth > l.MaxDepth {
				return fmt.Errorf("document is nested deeper than %d elements", l.MaxDepth)
			}
			if elements > l.MaxElements {
				return fmt.Errorf("document has more than %d elements", l.MaxElements)
			}
		case xml.EndElement:
			depth--
		case xml.Directive:
			return errors.New("document has a DTD or other directive; refusing it")
		case xml.ProcInst:
			if t.Target != "xml" {
				return fmt.Errorf("document has a processing instruction <?%s?>; refusing it", t.Target)
			}
		case xml.CharData:
			if depth == 0 && len(bytes.TrimSpace(t)) > 0 {
				return errors.New("malformed XML: text outside the root element")
			}
		}
	}
	if roots == 0 {
		return errors.New("malformed XML: no root element")
	}
	return nil
}

// Unmarshal checks data against l and then decodes it into v.
func Unmarshal(data []byte, l Limits, v any) error {
	if err := Check(data, l); err != nil {
		return err
	}
	return xml.Unmarshal(data, v)
}
