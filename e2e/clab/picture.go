package clab

import (
	"fmt"
	"html"
	"strings"
)

// SVG draws the topology for its README: spines on top, leaves below them,
// hosts at the bottom (by name; other nodes go last), each node with the
// image it runs and the nodes sharing its namespace, and every link with
// its interface names. It is generated from the .clab.yml, so the picture
// cannot drift from the lab (a test compares it with the committed file).
func (t *Topology) SVG() string {
	const boxW, boxH, gapX, gapY, margin = 170, 62, 40, 90, 30
	layerOf := func(n *Node) int {
		for i, p := range []string{"spine", "leaf", "host"} {
			if strings.HasPrefix(n.Name, p) {
				return i
			}
		}
		return 3
	}
	var layers [4][]*Node
	sidecars := map[string][]*Node{}
	for _, n := range t.Nodes {
		if s := n.SharesWith(); s != "" {
			sidecars[s] = append(sidecars[s], n)
			continue
		}
		layers[layerOf(n)] = append(layers[layerOf(n)], n)
	}
	widest := 0
	for _, l := range layers {
		widest = max(widest, len(l))
	}
	width := 2*margin + widest*boxW + (widest-1)*gapX
	type pos struct{ x, y int }
	at := map[string]pos{}
	rows := 0
	for _, l := range layers {
		if len(l) == 0 {
			continue
		}
		rowW := len(l)*boxW + (len(l)-1)*gapX
		x0 := (width - rowW) / 2
		for i, n := range l {
			at[n.Name] = pos{x0 + i*(boxW+gapX), margin + 20 + rows*(boxH+gapY)}
		}
		rows++
	}
	height := margin + 20 + rows*(boxH+gapY) - gapY + margin
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="14" font-weight="bold">%s</text>`+"\n", margin, margin, html.EscapeString("lab "+t.Name))
	for _, l := range t.Links {
		a, c := at[l.A.Node], at[l.B.Node]
		x1, y1, x2, y2 := a.x+boxW/2, a.y+boxH, c.x+boxW/2, c.y
		if a.y > c.y {
			x1, y1, x2, y2 = a.x+boxW/2, a.y, c.x+boxW/2, c.y+boxH
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#888"/>`+"\n", x1, y1, x2, y2)
		label := func(x, y int, s string) {
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#555" text-anchor="middle">%s</text>`+"\n", x, y, html.EscapeString(s))
		}
		label(x1+(x2-x1)/6, y1+(y2-y1)/6+4, l.A.Iface)
		label(x2-(x2-x1)/6, y2-(y2-y1)/6+4, l.B.Iface)
	}
	for _, l := range layers {
		for _, n := range l {
			p := at[n.Name]
			fill := "#eef4fb"
			if !n.FRR() {
				fill = "#e8f6ef"
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" rx="6" fill="%s" stroke="#345"/>`+"\n", p.x, p.y, boxW, boxH, fill)
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13" font-weight="bold" text-anchor="middle">%s</text>`+"\n", p.x+boxW/2, p.y+17, html.EscapeString(n.Name))
			lines := []string{runs(n)}
			for _, s := range sidecars[n.Name] {
				lines = append(lines, "+ "+runs(s))
			}
			for i, s := range lines {
				fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", p.x+boxW/2, p.y+33+i*13, html.EscapeString(s))
			}
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// runs names what a node runs, briefly.
func runs(n *Node) string {
	if n.FRR() {
		return "FRR"
	}
	f := strings.Fields(n.Cmd)
	if len(f) == 0 {
		return n.Image
	}
	s := f[0]
	if len(f) > 1 && !strings.HasPrefix(f[1], "-") {
		s += " " + f[1]
	}
	if strings.Contains(n.Cmd, "--backend sim") || strings.Contains(n.Cmd, "backend: sim") {
		s += " (sim)"
	}
	return s
}
