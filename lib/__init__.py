"""The ground floor: plain helpers every app uses. Imports no EnergyPay app and no Django model."""
