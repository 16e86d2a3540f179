// A stand-in collector for the SDK's own tests: a real HTTP server on 127.0.0.1 that
// records every POST /events body and answers like the collector (or not at all).

import { createServer } from 'node:http';
import { createServer as createTcpServer } from 'node:net';

/** An HTTP server recording event batches; `answer` sets the status it replies with. */
export async function fakeCollector({ status = 200 } = {}) {
  const batches = [];
  const server = createServer((request, response) => {
    let body = '';
    request.setEncoding('utf8');
    request.on('data', (chunk) => { body += chunk; });
    request.on('end', () => {
      batches.push({ url: request.url, headers: request.headers, body: JSON.parse(body) });
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(status === 200 ? '{}' : '{"code":14,"message":"down"}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    batches,
    /** Every event received so far, in order. */
    events: () => batches.flatMap((b) => b.body.events),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** A TCP server that accepts connections and never answers: a black-holed collector. */
export async function blackHole() {
  const sockets = new Set();
  const server = createTcpServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A loopback port with nothing listening. */
export async function closedPort() {
  const server = createTcpServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** Drop the kind wrapper: {stepEnd: {...}} → ['stepEnd', {...}]. */
export const kindOf = (event) => Object.entries(event)[0];
