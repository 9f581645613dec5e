-- The demo database: the tables the default policy (policies/data.json, resource orders-db)
-- knows about. Sensitive columns there: customers.ssn/email/phone/card_number,
-- payroll.salary/iban; update/delete on payroll needs a human approval.
CREATE TABLE public.customers (
  id          int PRIMARY KEY,
  name        text NOT NULL,
  email       text,
  phone       text,
  ssn         text,
  card_number text
);
CREATE TABLE public.orders (
  id          int PRIMARY KEY,
  customer_id int NOT NULL REFERENCES public.customers (id),
  item        text NOT NULL,
  total       numeric(10, 2) NOT NULL,
  placed_on   date NOT NULL
);
CREATE TABLE public.payroll (
  employee_id int PRIMARY KEY,
  name        text NOT NULL,
  salary      numeric(10, 2) NOT NULL,
  bonus       numeric(10, 2) NOT NULL DEFAULT 0,
  iban        text
);
INSERT INTO public.customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', '+1 555 0100', '123-45-6789', '4111111111111111'),
  (2, 'Alan Turing', 'alan@example.com', '+1 555 0101', '987-65-4321', '5500000000000004');
INSERT INTO public.orders VALUES
  (100, 1, 'Difference engine gears', 129.50, '2024-03-01'),
  (101, 1, 'Punch cards (box of 500)', 18.00, '2024-03-09'),
  (102, 2, 'Enigma rotor set', 310.00, '2024-04-02');
INSERT INTO public.payroll VALUES
  (7, 'Grace Hopper', 98000.00, 0, 'DE89370400440532013000'),
  (8, 'Edsger Dijkstra', 91000.00, 0, 'NL91ABNA0417164300');
