/** Placeholder until the nginx/Envoy check endpoint lands. */
import type { FastifyInstance } from 'fastify';
export default async function checkRoutes(_app: FastifyInstance) {}
