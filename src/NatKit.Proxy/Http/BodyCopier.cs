using System.Runtime.CompilerServices;

namespace NatKit.Proxy.Http;

/// <summary>
/// Streams message bodies (RFC 9112 section 6-7) from a reader to a stream through the reader's pooled buffer:
/// a known length, chunked (validated, re-framed with the proxy's own chunk headers), or until the connection
/// closes. Nothing is buffered whole, whatever the size.
/// </summary>
internal static class BodyCopier
{
    private const int MaxChunkLine = 4096;

    private static readonly byte[] Crlf = "\r\n"u8.ToArray();
    private static readonly byte[] LastChunk = "0\r\n\r\n"u8.ToArray();
    private static readonly byte[] LastChunkLine = "0\r\n"u8.ToArray();
    private static readonly byte[] LastChunkLineAfterData = "\r\n0\r\n"u8.ToArray();

    /// <summary>Copies exactly <paramref name="count"/> bytes.</summary>
    /// <param name="source">Where the bytes come from.</param>
    /// <param name="destination">Where they go.</param>
    /// <param name="count">How many bytes to copy.</param>
    /// <param name="flow">The flow whose counters the bytes are added to.</param>
    /// <param name="up">True for client to server, false for server to client.</param>
    /// <param name="deadline">The connection's deadline, re-armed as bytes move.</param>
    /// <param name="readRate">The minimum rate the source must keep (a request body), or null.</param>
    /// <param name="writeRate">The minimum rate the destination must take the bytes at (a response), or null.</param>
    /// <exception cref="EndOfStreamException">The source ended first.</exception>
    [AsyncMethodBuilder(typeof(PoolingAsyncValueTaskMethodBuilder))]
    public static async ValueTask CopyExactAsync(PooledReader source, Stream destination, long count, Flow flow,
        bool up, Deadline deadline, MinDataRate? readRate = null, MinDataRate? writeRate = null)
    {
        while (count > 0)
        {
            if (source.Available == 0)
            {
                var n = await FillAsync(source, deadline, readRate).ConfigureAwait(false);
                if (n <= 0)
                {
                    throw new EndOfStreamException("the stream ended inside a body");
                }
            }

            var take = (int)Math.Min(source.Available, count);
            await WriteAsync(destination, source.Memory[..take], deadline, writeRate).ConfigureAwait(false);
            flow.Add(up, take);
            source.Consume(take);
            count -= take;
        }
    }

    /// <summary>Copies a chunked body. Returns false when the framing is malformed (bad chunk size, missing CRLF
    /// after the data, bad or oversized trailers); the connection must then be closed.</summary>
    public static async ValueTask<bool> CopyChunkedAsync(PooledReader source, Stream destination, bool reChunk,
        byte[] scratch, int maxTrailerBytes, Flow flow, bool up, Deadline deadline, MinDataRate? readRate = null,
        MinDataRate? writeRate = null)
    {
        var pendingCrlf = false;
        while (true)
        {
            var lineLength = await ReadLineAsync(source, MaxChunkLine, deadline, readRate).ConfigureAwait(false);
            if (lineLength < 0 || !HttpHeadParser.TryParseChunkSize(source.Span[..lineLength], out var size))
            {
                return false;
            }

            source.Consume(lineLength + 2);
            if (size == 0)
            {
                return await CopyTrailersAsync(source, destination, reChunk, pendingCrlf, maxTrailerBytes, deadline,
                    readRate, writeRate).ConfigureAwait(false);
            }

            if (reChunk)
            {
                var n = WriteChunkHeader(scratch, pendingCrlf, size);
                await WriteAsync(destination, scratch.AsMemory(0, n), deadline, writeRate).ConfigureAwait(false);
            }

            await CopyExactAsync(source, destination, size, flow, up, deadline, readRate, writeRate)
                .ConfigureAwait(false);
            while (source.Available < 2)
            {
                if (await FillAsync(source, deadline, readRate).ConfigureAwait(false) <= 0)
                {
                    return false;
                }
            }

            if (source.Span[0] != (byte)'\r' || source.Span[1] != (byte)'\n')
            {
                return false;
            }

            source.Consume(2);
            pendingCrlf = true;
        }
    }

    /// <summary>Copies everything until the source closes (a response without a length, RFC 9112 6.3 rule 8).</summary>
    public static async ValueTask CopyUntilCloseAsync(PooledReader source, Stream destination, bool reChunk,
        byte[] scratch, Flow flow, bool up, Deadline deadline, MinDataRate? writeRate = null)
    {
        var pendingCrlf = false;
        while (true)
        {
            if (source.Available == 0)
            {
                deadline.Arm();
                if (await source.FillAsync(deadline.Token).ConfigureAwait(false) <= 0)
                {
                    if (reChunk)
                    {
                        if (pendingCrlf)
                        {
                            await WriteAsync(destination, Crlf, deadline, writeRate).ConfigureAwait(false);
                        }

                        await WriteAsync(destination, LastChunk, deadline, writeRate).ConfigureAwait(false);
                    }

                    return;
                }
            }

            var chunk = source.Memory;
            if (reChunk)
            {
                var n = WriteChunkHeader(scratch, pendingCrlf, chunk.Length);
                await WriteAsync(destination, scratch.AsMemory(0, n), deadline, writeRate).ConfigureAwait(false);
                pendingCrlf = true;
            }

            await WriteAsync(destination, chunk, deadline, writeRate).ConfigureAwait(false);
            flow.Add(up, chunk.Length);
            source.Consume(chunk.Length);
        }
    }

    /// <summary>The length of the line at the start of the buffer (without CRLF), reading more as needed; -1 when
    /// the stream ends or the line is longer than <paramref name="max"/>.</summary>
    public static async ValueTask<int> ReadLineAsync(PooledReader source, int max, Deadline deadline,
        MinDataRate? rate = null)
    {
        while (true)
        {
            var i = source.Span.IndexOf("\r\n"u8);
            if (i >= 0)
            {
                return i <= max ? i : -1;
            }

            if (source.Available >= max)
            {
                return -1;
            }

            if (await FillAsync(source, deadline, rate).ConfigureAwait(false) <= 0)
            {
                return -1;
            }
        }
    }

    private static async ValueTask<bool> CopyTrailersAsync(PooledReader source, Stream destination, bool reChunk,
        bool pendingCrlf, int maxTrailerBytes, Deadline deadline, MinDataRate? readRate, MinDataRate? writeRate)
    {
        if (reChunk)
        {
            var last = pendingCrlf ? LastChunkLineAfterData : LastChunkLine;
            await WriteAsync(destination, last, deadline, writeRate).ConfigureAwait(false);
        }

        var total = 0;
        while (true)
        {
            var lineLength = await ReadLineAsync(source, maxTrailerBytes, deadline, readRate).ConfigureAwait(false);
            if (lineLength < 0)
            {
                return false;
            }

            if (lineLength == 0)
            {
                source.Consume(2);
                if (reChunk)
                {
                    await WriteAsync(destination, Crlf, deadline, writeRate).ConfigureAwait(false);
                }

                return true;
            }

            total += lineLength + 2;
            if (total > maxTrailerBytes || !HttpHeadParser.IsValidFieldLine(source.Span[..lineLength]))
            {
                return false;
            }

            if (reChunk)
            {
                await WriteAsync(destination, source.Memory[..(lineLength + 2)], deadline, writeRate)
                    .ConfigureAwait(false);
            }

            source.Consume(lineLength + 2);
        }
    }

    /// <summary>Reads more into <paramref name="source"/>, re-arming the idle deadline and, for a request body,
    /// timing the wait against the minimum data rate.</summary>
    private static ValueTask<int> FillAsync(PooledReader source, Deadline deadline, MinDataRate? rate)
    {
        deadline.Arm();
        return rate is null ? source.FillAsync(deadline.Token) : rate.FillAsync(source, deadline.Token);
    }

    /// <summary>Writes to <paramref name="destination"/>, re-arming the idle deadline and, for a response,
    /// timing the write against the minimum data rate.</summary>
    public static ValueTask WriteAsync(Stream destination, ReadOnlyMemory<byte> bytes, Deadline deadline,
        MinDataRate? rate)
    {
        deadline.Arm();
        return rate is null ? destination.WriteAsync(bytes, deadline.Token) : rate.WriteAsync(destination, bytes,
            deadline.Token);
    }

    private static int WriteChunkHeader(byte[] scratch, bool pendingCrlf, long size)
    {
        var w = new HeadWriter(scratch);
        if (pendingCrlf)
        {
            w.Append("\r\n"u8);
        }

        w.AppendHex(size);
        w.Append("\r\n"u8);
        return w.Length;
    }
}
