-- v1.3.0, step 4: the new status type, with the `archived` value.
CREATE TYPE user_status_new AS ENUM ('active', 'inactive', 'pending', 'suspended', 'archived');
