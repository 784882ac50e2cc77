using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using NatKit.Traversal;

namespace NatKit.Scenarios.Matrix;

/// <summary>A matrix run as JSON records (for machines) and as one self-contained HTML page (for people).</summary>
public static class MatrixReport
{
    /// <summary>"direct", "hairpin", "relay", "failed".</summary>
    public static string Name(MatrixPath path) => path switch
    {
        MatrixPath.Direct => "direct",
        MatrixPath.Hairpin => "hairpin",
        MatrixPath.Relay => "relay",
        _ => "failed",
    };

    /// <summary>"host", "reflexive", "peer-reflexive", "port-mapped", "prediction", "birthday", "relay".</summary>
    public static string Name(TraversalMethod method) => method switch
    {
        TraversalMethod.Host => "host",
        TraversalMethod.Reflexive => "reflexive",
        TraversalMethod.PeerReflexive => "peer-reflexive",
        TraversalMethod.PortMapped => "port-mapped",
        TraversalMethod.Prediction => "prediction",
        TraversalMethod.Birthday => "birthday",
        _ => "relay",
    };

    /// <summary>Milliseconds with at most one decimal, invariant.</summary>
    public static string Milliseconds(TimeSpan t) =>
        t.TotalMilliseconds.ToString(t.TotalMilliseconds >= 100 ? "0" : "0.#", CultureInfo.InvariantCulture) + " ms";

    /// <summary>
    /// Every cell as a record: its name ("A x B") and its fields as one JSON object, camelCase (<c>a</c>, <c>b</c>,
    /// <c>path</c> = direct|hairpin|relay|failed, <c>method</c>, <c>connectMs</c>, <c>probes</c>, <c>rttMs</c>,
    /// <c>expected</c>, <c>expectedMethod</c>, <c>expectedProbability</c>, <c>agrees</c>, <c>reason</c>, <c>seed</c>,
    /// <c>virtualMs</c>, <c>wallMs</c>, <c>detail</c>). Missing values are null. The CLI prints them as its one
    /// <c>--json</c> shape (an array of named records).
    /// </summary>
    public static IEnumerable<(string Name, string Json)> Records(MatrixResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        foreach (var c in result.Cells)
        {
            yield return ($"{c.A.Name} x {c.B.Name}", CellJson(c));
        }
    }

    private static string CellJson(MatrixCellResult c)
    {
        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream))
        {
            var o = c.Outcome;
            w.WriteStartObject();
            w.WriteString("a", c.A.Name);
            w.WriteString("b", c.B.Name);
            w.WriteString("path", Name(o.Path));
            if (o.Method is { } m) w.WriteString("method", Name(m));
            else w.WriteNull("method");
            Number(w, "connectMs", o.ConnectTime);
            w.WriteNumber("probes", o.ProbesSent);
            Number(w, "rttMs", o.Rtt);
            w.WriteString("expected", Name(c.Expected.Path));
            w.WriteString("expectedMethod", Name(c.Expected.Method));
            if (c.Expected.Probability is { } p) w.WriteNumber("expectedProbability", Math.Round(p, 4));
            w.WriteBoolean("agrees", c.Agrees);
            w.WriteString("reason", c.Expected.Reason);
            w.WriteNumber("seed", c.Seed);
            w.WriteNumber("virtualMs", Math.Round(c.VirtualTime.TotalMilliseconds, 3));
            w.WriteNumber("wallMs", Math.Round(c.WallTime.TotalMilliseconds, 1));
            if (o.Detail is { } d) w.WriteString("detail", d);
            else w.WriteNull("detail");
            w.WriteEndObject();
        }

        return Encoding.UTF8.GetString(stream.ToArray());
    }

    /// <summary>
    /// One self-contained page (inline CSS and script, no external asset): the A x B grid coloured by path, a cell
    /// that disagrees with the oracle outlined, each cell's detail in its tooltip and, on click, in a panel below;
    /// the same-LAN cells under it.
    /// </summary>
    public static string ToHtml(MatrixResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var o = result.Options;
        var s = new StringBuilder();
        s.Append("""
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>NatKit traversal matrix</title>
            <style>
            body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
            table{border-collapse:collapse}
            th,td{border:1px solid #bbb;padding:4px 6px;text-align:center}
            th{background:#f3f3f3;font-weight:600}
            th.row{text-align:right}
            td.cell{cursor:pointer;min-width:6.5em}
            td.cell small{display:block;color:#333}
            .direct{background:#b9e6b3}.hairpin{background:#a8dcdc}.relay{background:#f6d98b}.failed{background:#f2a3a3}
            td.disagrees{outline:3px solid #c00;outline-offset:-3px}
            td.selected{box-shadow:inset 0 0 0 2px #000}
            #detail{margin-top:1em;padding:.6em .8em;border:1px solid #bbb;background:#fafafa;white-space:pre-wrap;max-width:70em}
            .legend span{display:inline-block;padding:2px 8px;margin-right:6px;border:1px solid #bbb}
            </style></head><body>
            <h1>NatKit traversal matrix</h1>

            """);
        s.Append(CultureInfo.InvariantCulture,
            $"<p>Rows connect to columns. Seed {o.Seed}; every link {Milliseconds(o.Link.Latency)} latency, {o.Link.Loss:P1} loss; relay {(o.Relay ? "configured" : "not configured")}; probe budget {o.Budget.Total} probes, {o.Budget.HardSideSockets} hard-side sockets. {result.Cells.Count} cells in {Milliseconds(result.WallTime)} of wall time; {result.Disagreements} disagree with the oracle.</p>\n");
        s.Append("""<p class="legend"><span class="direct">direct</span><span class="hairpin">hairpin</span><span class="relay">relay</span><span class="failed">failed</span><span style="outline:3px solid #c00;outline-offset:-3px">disagrees with the oracle</span> Click a cell for its detail.</p>""");
        s.Append('\n');

        var grid = result.GridTypes;
        if (grid.Count > 0)
        {
            s.Append("<table>\n<tr><th>A \u2193 connects to B \u2192</th>");
            foreach (var b in grid)
            {
                s.Append("<th title=\"").Append(Html(b.Description)).Append("\">").Append(Html(b.Name)).Append("</th>");
            }

            s.Append("</tr>\n");
            foreach (var a in grid)
            {
                s.Append("<tr><th class=\"row\" title=\"").Append(Html(a.Description)).Append("\">").Append(Html(a.Name)).Append("</th>");
                foreach (var b in grid)
                {
                    var c = result.Cell(a.Name, b.Name);
                    if (c is null) s.Append("<td></td>");
                    else Cell(s, c);
                }

                s.Append("</tr>\n");
            }

            s.Append("</table>\n");
        }

        var lan = result.Cells.Where(c => c.SameLan).ToList();
        if (lan.Count > 0)
        {
            s.Append("<h2>Two hosts on one LAN</h2>\n<table>\n<tr>");
            foreach (var c in lan)
            {
                s.Append("<th title=\"").Append(Html(c.A.Description)).Append("\">").Append(Html(c.A.Name)).Append("</th>");
            }

            s.Append("</tr>\n<tr>");
            foreach (var c in lan)
            {
                Cell(s, c);
            }

            s.Append("</tr>\n</table>\n");
        }

        s.Append("""
            <div id="detail">Click a cell.</div>
            <script>
            document.querySelectorAll('td.cell').forEach(function(td){
              td.addEventListener('click',function(){
                document.querySelectorAll('td.selected').forEach(function(x){x.classList.remove('selected');});
                td.classList.add('selected');
                document.getElementById('detail').textContent=td.getAttribute('title');
              });
            });
            </script>
            </body></html>

            """);
        return s.ToString();
    }

    /// <summary>The cell's detail, several lines: what happened, what the oracle expected and why.</summary>
    public static string Detail(MatrixCellResult c)
    {
        ArgumentNullException.ThrowIfNull(c);
        var o = c.Outcome;
        var s = new StringBuilder();
        s.Append(CultureInfo.InvariantCulture, $"{c.A.Name} connects to {c.B.Name}: {Name(o.Path)}");
        if (o.Method is { } m) s.Append(" by ").Append(Name(m));
        if (o.ConnectTime is { } t) s.Append(" in ").Append(Milliseconds(t)).Append(" of virtual time");
        s.Append(CultureInfo.InvariantCulture, $"; {o.ProbesSent} probes sent");
        if (o.Rtt is { } rtt) s.Append("; RTT ").Append(Milliseconds(rtt));
        s.Append('.');
        s.Append('\n').Append(c.Agrees ? "As the oracle expects: " : "The oracle expects ")
            .Append(Name(c.Expected.Path)).Append(" (").Append(Name(c.Expected.Method)).Append("). ")
            .Append(c.Expected.Reason);
        s.Append(CultureInfo.InvariantCulture, $"\nA: {c.A.Description}. B: {c.B.Description}.");
        s.Append(CultureInfo.InvariantCulture,
            $"\nLab seed {c.Seed}; {Milliseconds(c.VirtualTime)} of virtual time in {Milliseconds(c.WallTime)} of wall time.");
        if (o.Detail is { } d) s.Append('\n').Append(d);
        return s.ToString();
    }

    private static void Cell(StringBuilder s, MatrixCellResult c)
    {
        var o = c.Outcome;
        s.Append("<td class=\"cell ").Append(Name(o.Path)).Append(c.Agrees ? "" : " disagrees").Append("\" title=\"")
            .Append(Html(Detail(c))).Append("\">").Append(Name(o.Path));
        if (o.Method is { } m && o.Path != MatrixPath.Relay) s.Append("<small>").Append(Name(m)).Append("</small>");
        if (o.ConnectTime is { } t) s.Append("<small>").Append(Milliseconds(t)).Append("</small>");
        s.Append("</td>");
    }

    private static void Number(Utf8JsonWriter w, string name, TimeSpan? t)
    {
        if (t is { } v) w.WriteNumber(name, Math.Round(v.TotalMilliseconds, 3));
        else w.WriteNull(name);
    }

    private static string Html(string text) => WebUtility.HtmlEncode(text).Replace("\n", "&#10;", StringComparison.Ordinal);
}
