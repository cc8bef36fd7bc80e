/**
 * A small JSON Schema subset, written once per tool and used twice: sent to Claude as the
 * tool's `input_schema`, and checked by hand here (no schema library) so a model's bad input
 * becomes a tool error that names the field, never an exception.
 */

/** One node of a tool input schema. */
export type SchemaNode =
  | { type: "string"; description?: string; minLength?: number; maxLength?: number; enum?: readonly string[]; pattern?: string }
  | { type: "integer"; description?: string; minimum?: number; maximum?: number }
  | { type: "boolean"; description?: string }
  | { type: "array"; description?: string; items: SchemaNode; minItems?: number; maxItems?: number }
  | { type: "object"; description?: string; properties: Record<string, SchemaNode>; required?: readonly string[] };

/** The JSON Schema (draft 2020-12 subset) for a node; objects refuse unknown properties. */
export function toJsonSchema(node: SchemaNode): Record<string, unknown> {
  switch (node.type) {
    case "object": {
      const properties: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(node.properties)) properties[key] = toJsonSchema(child);
      return {
        type: "object",
        ...(node.description ? { description: node.description } : {}),
        properties,
        required: [...(node.required ?? [])],
        additionalProperties: false,
      };
    }
    case "array":
      return { ...node, items: toJsonSchema(node.items) };
    case "string":
      return { ...node, ...(node.enum ? { enum: [...node.enum] } : {}) };
    default:
      return { ...node };
  }
}

/** Checks `value` against `node`; returns every problem as "path: what is wrong" (empty when valid). */
export function validateInput(node: SchemaNode, value: unknown, path = "input"): string[] {
  switch (node.type) {
    case "string": {
      if (typeof value !== "string") return [`${path} must be a string`];
      const errors: string[] = [];
      if (node.minLength !== undefined && value.trim().length < node.minLength) {
        errors.push(node.minLength === 1 ? `${path} must not be empty` : `${path} must have at least ${node.minLength} characters`);
      }
      if (node.maxLength !== undefined && value.length > node.maxLength) errors.push(`${path} must have at most ${node.maxLength} characters`);
      if (node.enum && !node.enum.includes(value)) errors.push(`${path} must be one of ${node.enum.map((e) => `"${e}"`).join(", ")}`);
      if (node.pattern && !new RegExp(node.pattern).test(value)) errors.push(`${path} has the wrong format`);
      return errors;
    }
    case "integer": {
      if (typeof value !== "number" || !Number.isSafeInteger(value)) return [`${path} must be a whole number`];
      const errors: string[] = [];
      if (node.minimum !== undefined && value < node.minimum) errors.push(`${path} must be at least ${node.minimum}`);
      if (node.maximum !== undefined && value > node.maximum) errors.push(`${path} must be at most ${node.maximum}`);
      return errors;
    }
    case "boolean":
      return typeof value === "boolean" ? [] : [`${path} must be true or false`];
    case "array": {
      if (!Array.isArray(value)) return [`${path} must be a list`];
      const errors: string[] = [];
      if (node.minItems !== undefined && value.length < node.minItems) errors.push(`${path} needs at least ${node.minItems} entries`);
      if (node.maxItems !== undefined && value.length > node.maxItems) errors.push(`${path} allows at most ${node.maxItems} entries`);
      value.forEach((item, i) => errors.push(...validateInput(node.items, item, `${path}[${i}]`)));
      return errors;
    }
    case "object": {
      if (typeof value !== "object" || value === null || Array.isArray(value)) return [`${path} must be an object`];
      const record = value as Record<string, unknown>;
      const errors: string[] = [];
      for (const key of node.required ?? []) {
        if (record[key] === undefined || record[key] === null) errors.push(`${path}.${key} is required`);
      }
      for (const [key, child] of Object.entries(record)) {
        const schema = node.properties[key];
        if (!schema) {
          errors.push(`${path}.${key} is not a known field`);
          continue;
        }
        if (child === undefined || child === null) continue;
        errors.push(...validateInput(schema, child, `${path}.${key}`));
      }
      return errors;
    }
  }
}
